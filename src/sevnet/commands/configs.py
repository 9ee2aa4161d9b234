"""The experiment configs shipped with sevnet. Without NAME: each config's name and purpose. With
NAME: the file itself, to copy and edit (``sevnet configs folder_sevnet_xs > mine.yaml``). Any
command that takes a config takes a shipped name as well as a path.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", default=None, help="print this config (a name from the list)")


def run(args: argparse.Namespace) -> int:
    from sevnet.engine.config import config_purpose, resolve_config, shipped_configs

    if args.name is not None:
        print(resolve_config(args.name).read_text(encoding="utf-8"), end="")
        return 0
    shipped = shipped_configs()
    width = max(map(len, shipped), default=0)
    for name, path in shipped.items():
        print(f"{name:<{width}}  {config_purpose(path)}")
    print(f"\nsevnet configs NAME prints one; sevnet train NAME data.root=DIR trains with it ({path.parent})")
    return 0
