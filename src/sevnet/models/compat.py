"""Reading weights written by older sevnet versions.

Format 1 (sevnet <= 0.1.0) stored each block's layers as an unnamed ``body`` sequence and each
conv + BN as ``0`` / ``1``; format 2 names them (``channel.conv``, ``spatial.bn``, ...). Format 1
models also predate the options added since (e.g. a temporal conv in the stem), so their
architecture is pinned to what it was when they were written.
"""

from __future__ import annotations

import re
from typing import Any

# The names of a block's layers in forward order, without / with squeeze-and-excitation.
_BODY_NAMES: dict[str, tuple[str, ...]] = {
    "sev": ("channel", "spatial", "temporal"),
    "r2plus1d": ("spatial", "temporal"),
    "r3d": ("spacetime", "channel"),
}
# Defaults of format-1 SEVNets for options whose default changed later.
V1_SEVNET_DEFAULTS: dict[str, Any] = {"stem_temporal_kernel": 1, "zero_init_last": True}
_CONV_BN = {"0": "conv", "1": "bn"}


def _body_names(block: str, has_se: bool) -> tuple[str, ...]:
    names = _BODY_NAMES[block]
    return (*names[:-1], "se", names[-1]) if has_se else names


def remap_v1_keys(state: dict[str, Any], block: str = "sev") -> dict[str, Any]:
    """Rename format-1 model keys (no ``model.`` prefix) to format 2; other keys pass unchanged."""
    has_se = any(".fc1." in k for k in state)
    names = _body_names(block, has_se)
    out = {}
    for key, value in state.items():
        key = re.sub(r"^(stem)\.([01])\.", lambda m: f"stem.spatial.{_CONV_BN[m[2]]}.", key)
        key = re.sub(r"^(head_conv|.*shortcut\.proj)\.([01])\.", lambda m: f"{m[1]}.{_CONV_BN[m[2]]}.", key)
        key = re.sub(r"\.body\.(\d+)\.([01])\.", lambda m: f".{names[int(m[1])]}.{_CONV_BN[m[2]]}.", key)
        key = re.sub(r"\.body\.(\d+)\.(fc[12])\.", lambda m: f".{names[int(m[1])]}.{m[2]}.", key)
        out[key] = value
    return out


def upgrade_v1_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Pin a format-1 SEVNet's architecture options to their format-1 defaults."""
    if str(meta.get("model", "")).startswith("sevnet_"):
        overrides = {**V1_SEVNET_DEFAULTS, **meta.get("model_overrides", {})}
        meta = {**meta, "model_overrides": overrides}
    return meta
