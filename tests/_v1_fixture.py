"""A format-1 checkpoint (sevnet <= 0.1.0) rebuilt from its recorded key list, for the upgrade test.

Checkpoint files are not committed, so tests/fixtures/v1_tiny_sevnet.json records what sevnet 0.1.0
wrote for a tiny SEVNet-XS with SE (header, tensor names, shapes, dtypes) and the logits 0.1.0's own
``load_model`` gave on a fixed input after loading the tensor values ``tensor_value`` produces.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import torch
from safetensors.torch import save_file

FIXTURE = Path(__file__).parent / "fixtures" / "v1_tiny_sevnet.json"


def tensor_value(key: str, shape: list[int], dtype: str) -> torch.Tensor:
    """Deterministic, key-specific values (a wrong key mapping changes the outputs)."""
    if dtype == "I64":
        return torch.zeros(shape, dtype=torch.int64)
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("running_var"):
        return torch.rand(shape, generator=gen) + 0.5
    return torch.randn(shape, generator=gen) * 0.3


def fixed_input() -> torch.Tensor:
    return torch.linspace(-1, 1, 3 * 4 * 20 * 20).reshape(1, 3, 4, 20, 20)


def write_v1_checkpoint(path: Path) -> list[float]:
    """Write the format-1 file; return the logits sevnet 0.1.0 computed from it."""
    spec = json.loads(FIXTURE.read_text())
    tensors = {k: tensor_value(k, spec["shapes"][k], spec["dtypes"][k]) for k in spec["keys"]}
    save_file(tensors, str(path), metadata=spec["header"])
    return spec["logits"]
