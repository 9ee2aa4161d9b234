#!/usr/bin/env bash
# Create (or reuse) .venv and install sevnet with everything the demo, the tests and the benchmarks use.
# Idempotent: a second run only checks that the pinned versions are there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# (stderr filter: this machine's local package index prints a harmless warning per package)
# Pinned here; the package metadata declares a range (torch>=2.11, the oldest the suite was run on).
"${PIP[@]}" install "torch==2.14.1" "torchvision==0.29.1" 2> >(grep -v "is ignored" >&2)
"${PIP[@]}" install -e ".[deploy,peers,dev]" 2> >(grep -v "is ignored" >&2)
# PyTorchVideo 0.1.5 pins old dependencies; its model builders work without them (peers only).
"${PIP[@]}" install --no-deps "pytorchvideo==0.1.5" 2> >(grep -v "is ignored" >&2)
.venv/bin/python -c "import torch, sevnet; print('sevnet', sevnet.__version__, '| torch', torch.__version__)"
