#!/usr/bin/env bash
# Build wheelhouse/ (git-ignored) for a GPU machine that has PyTorch and no package registry:
# every package that sevnet[deploy,peers,dev] needs beyond torch and torchvision (and what those two
# pull in, which such a machine has by definition), pytorchvideo 0.1.5 (installed --no-deps, as
# scripts/setup.sh does) and setuptools/wheel (the editable install's build backend), as wheels for
# the GPU machine's Python. scripts/gpu_check.sh installs from it with --no-index.
#
#   scripts/build_wheelhouse.sh                      # for CPython 3.12 (the GPU machine's python3)
#   TARGET_PY=3.11 scripts/build_wheelhouse.sh        # for another Python
#   SLIM=1 scripts/build_wheelhouse.sh                # leave out what that machine's image already has,
#                                                     # and openvino/nncf/ruff (fits the 64 MiB carried there)
#
# Versions are resolved once, by pip, for TARGET_PY (with python$TARGET_PY when this machine has it)
# against torch==$TORCH / torchvision==$TORCHVISION, then each is fetched as a binary wheel for
# linux x86_64, or built here from its sdist when it has no wheel (pure-Python ones only: checked).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_PY=${TARGET_PY:-3.12}
TORCH=${TORCH:-2.11.0}
TORCHVISION=${TORCHVISION:-0.26.0}
OUT=${WHEELHOUSE:-wheelhouse}
RESOLVER=${RESOLVER_PYTHON:-}
if [ -z "$RESOLVER" ]; then
  for cand in "python$TARGET_PY" "$HOME"/.pyenv/versions/"$TARGET_PY".*/bin/python; do
    if "$cand" -c "import sys; assert sys.version.startswith('$TARGET_PY.')" 2>/dev/null; then RESOLVER=$cand; fi
  done
fi
if [ -z "$RESOLVER" ]; then
  echo "note: no Python $TARGET_PY here; resolving with python3 (environment markers of its version)" >&2
  RESOLVER=python3
fi
# Packages the GPU image ships (its package list, 2026-11) at versions that satisfy sevnet's ranges;
# SLIM=1 leaves them out to keep the wheelhouse small (the device copy carries 64 MiB at most).
ON_IMAGE="numpy pillow matplotlib contourpy cycler fonttools kiwisolver pyparsing python-dateutil six packaging
  tensorboard tensorboard-data-server grpcio markdown werkzeug absl-py protobuf scipy scikit-image imageio
  tifffile lazy-loader networkx onnx onnx-ir onnxruntime onnxscript ml-dtypes flatbuffers sympy mpmath
  coloredlogs humanfriendly safetensors torchmetrics lightning-utilities tqdm pyyaml pytest iniconfig pluggy
  pygments typing-extensions tabulate portalocker psutil rich markdown-it-py mdurl jinja2 markupsafe
  scikit-learn joblib threadpoolctl cloudpickle ninja narwhals pandas tzdata"
mkdir -p "$OUT"
rm -f "$OUT"/*.whl  # one version of each: this build's
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'torch==%s\ntorchvision==%s\n' "$TORCH" "$TORCHVISION" >"$work/constraints.txt"
PIP=("$RESOLVER" -m pip --disable-pip-version-check)
echo "resolving .[deploy,peers,dev] for Python $TARGET_PY with $RESOLVER (torch $TORCH, torchvision $TORCHVISION)"
"${PIP[@]}" install -q --dry-run --ignore-installed --report "$work/report.json" -c "$work/constraints.txt" \
  ".[deploy,peers,dev]" "setuptools>=68" wheel 2> >(grep -v "is ignored" >&2)
SLIM=${SLIM:-0} ON_IMAGE="$ON_IMAGE" "$RESOLVER" - "$work/report.json" >"$work/wanted.txt" <<'EOF'
import json, os, re, sys
try:
    from packaging.requirements import Requirement
except ImportError:  # a bare Python: pip's vendored copy
    from pip._vendor.packaging.requirements import Requirement
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
items = {norm(i["metadata"]["name"]): i["metadata"] for i in json.load(open(sys.argv[1]))["install"]}
# torch, torchvision and everything they pull in (extras too: torch 2.11 takes its CUDA libraries
# as cuda-toolkit[cublas,...]) are on the GPU machine already


def closure(roots, drop=frozenset()):
    """Every package the roots pull in (with the extras asked for), leaving out ``drop`` and what only it needs."""
    seen, todo = set(), list(roots)
    while todo:
        name, extras = todo.pop()
        if name in seen or name not in items or name in drop:
            continue
        seen.add(name)
        for text in items[name].get("requires_dist") or []:
            req = Requirement(text)
            wanted = req.marker is None or "extra" not in str(req.marker)
            if wanted or any(req.marker.evaluate({"extra": e}) for e in extras):
                todo.append((norm(req.name), tuple(req.extras)))
    return seen


on_gpu = closure([("torch", ()), ("torchvision", ())])
on_gpu |= {n for n in items if n.startswith(("nvidia-", "cuda-")) or n == "triton"}  # in any case
slim = os.environ.get("SLIM") == "1"
# SLIM: openvino/nncf (a CPU runtime: nothing about it changes on a GPU; 60 MB) and ruff stay behind
needed = closure([("sevnet", ("deploy", "peers", "dev"))], {"openvino", "nncf", "ruff"} if slim else frozenset())
skip = on_gpu | {"sevnet"} | ({norm(n) for n in os.environ["ON_IMAGE"].split()} if slim else set())
for name in sorted((needed - skip) | {"setuptools", "wheel"}):
    print(f"{items[name]['name']}=={items[name]['version']}")
EOF
PLATFORMS=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64)
for n in $(seq 5 39); do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
abi="cp${TARGET_PY/./}"
while read -r req; do
  if ! "${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version "$TARGET_PY" --implementation cp \
      --abi "$abi" --abi abi3 --abi none "${PLATFORMS[@]}" -d "$OUT" "$req" 2>"$work/err"; then
    "${PIP[@]}" wheel -q --no-deps -w "$work/built" "$req" 2> >(grep -v "is ignored" >&2)
  fi
done <"$work/wanted.txt"
"${PIP[@]}" wheel -q --no-deps -w "$work/built" "pytorchvideo==0.1.5" 2> >(grep -v "is ignored" >&2)
for whl in "$work"/built/*.whl; do
  case "$whl" in
    *-none-any.whl) cp "$whl" "$OUT/" ;;
    *) echo "error: $(basename "$whl") has no wheel for Python $TARGET_PY and is not pure Python" >&2; exit 1 ;;
  esac
done
echo "wheelhouse: $(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1) in $OUT/; the largest:"
ls -S "$OUT"/*.whl | head -8 | xargs du -h | sed 's/^/  /'
