#!/usr/bin/env bash
# One command for a bare GPU machine (PyTorch preinstalled, no package registry): install sevnet's
# other dependencies from wheelhouse/ (built beforehand by scripts/build_wheelhouse.sh, or by
# `scripts/gpu_check.sh --wheels`), then, in about 8 minutes, run the test suite with CUDA visible,
# `sevnet demo` and `benchmarks/gpu_bench.py --quick`, and print a short summary (also written to
# reports/gpu_check/summary.md, and copied to $OUT when that is set).
#
#   scripts/gpu_check.sh                    # on the GPU machine
#   scripts/gpu_check.sh --wheels           # here, beforehand: build wheelhouse/ (SLIM=1 for a small one)
#   PYTHON=/path/to/python3 scripts/gpu_check.sh --skip-tests --budget 300
#
# --budget S (480): the tests get what the later steps leave (they reserve about 150 s for the demo, 60 s
# with GPU_CHECK_DEMO=quick, 150 s for the benchmark and 120 s for --loader-bench); pytest-xdist runs them in
# 8 processes where it is installed. --budget 570 fits a 600 s command.
# --loader-bench adds benchmarks/loader_bench.py with cores - 1 workers (the 16-core loader figure).
# GPU_CHECK_PYTEST_ARGS (e.g. "tests/test_trainer.py"), GPU_CHECK_WORKERS (8), GPU_CHECK_VENV,
# GPU_CHECK_REUSE_VENV=1 (skip the install), GPU_CHECK_DEMO=quick, GPU_CHECK_BENCH_ARGS ("--quick"),
# GPU_CHECK_LOADER_ARGS ("--videos 96 --rounds 2"), WHEELHOUSE (wheelhouse/) adjust a run.
#
# Torch is never installed or upgraded: a venv is made from the Python that has torch (PYTHON, else the
# first of python3 / /opt/torch/.venv/bin/python3 that imports it) and sees that Python's packages.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUDGET=480 SKIP_TESTS=0 SKIP_DEMO=0 SKIP_BENCH=0 LOADER_BENCH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) shift; exec scripts/build_wheelhouse.sh "$@" ;;
    --skip-tests) SKIP_TESTS=1 ;;
    --skip-demo) SKIP_DEMO=1 ;;
    --skip-bench) SKIP_BENCH=1 ;;
    --loader-bench) LOADER_BENCH=1 ;;
    --budget) BUDGET=$2; shift ;;
    *) echo "usage: scripts/gpu_check.sh [--wheels] [--skip-tests] [--skip-demo] [--skip-bench] [--loader-bench] [--budget S]" >&2; exit 2 ;;
  esac
  shift
done
START=$(date +%s)
elapsed() { echo $(($(date +%s) - START)); }
REPORT=$ROOT/reports/gpu_check
WHEELHOUSE=${WHEELHOUSE:-$ROOT/wheelhouse}
VENV=${GPU_CHECK_VENV:-/tmp/sevnet-gpu-check-venv}
mkdir -p "$REPORT"
rm -f "$REPORT"/*.log "$REPORT"/summary.md
SUMMARY=$REPORT/summary.md
say() { echo "$*" | tee -a "$SUMMARY"; }

# ---- the Python that has torch ------------------------------------------------------------------
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3 /opt/torch/.venv/bin/python3 python; do
    if command -v "$cand" >/dev/null && "$cand" -c "import torch" 2>/dev/null; then PY=$(command -v "$cand"); break; fi
  done
fi
if [ -z "$PY" ] || ! "$PY" -c "import torch" 2>/dev/null; then
  echo "error: no Python with torch found (set PYTHON=/path/to/python3)" >&2; exit 1
fi
TORCH_BEFORE=$("$PY" -c "import torch; print(torch.__version__, torch.__file__)")
say "# sevnet GPU check"
say ""
say "- python: $PY ($("$PY" -c 'import platform; print(platform.python_version())')); torch $TORCH_BEFORE"
say "- device: $("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device visible')")"

# ---- venv that sees the torch Python's packages, then the wheelhouse ---------------------------------
install() {
  [ -d "$WHEELHOUSE" ] || { echo "error: $WHEELHOUSE not found: build it first (scripts/build_wheelhouse.sh)" >&2; return 1; }
  rm -rf "$VENV"
  local pipper=("$VENV/bin/python" -m pip)
  if [ "${GPU_CHECK_WITHOUT_PIP:-0}" = 1 ] || ! "$PY" -m venv --system-site-packages "$VENV"; then
    # a Python without ensurepip (a distribution's python3 without its venv package): a venv with no
    # pip of its own, filled by the torch Python's pip (pip >= 22.3 can install into another Python)
    rm -rf "$VENV"
    "$PY" -m venv --system-site-packages --without-pip "$VENV" || return 1
    pipper=("$PY" -m pip --python "$VENV/bin/python")
  fi
  # A venv made from a venv's python sees the BASE interpreter's packages, not that venv's (where torch
  # is, e.g. /opt/torch/.venv): name them in a .pth file, after the new venv's own site-packages.
  local site
  site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  "$PY" -c "import site; print('\n'.join(site.getsitepackages()))" >"$site/_torch_python.pth"
  local pip=("${pipper[@]}" install --disable-pip-version-check -q --no-index --find-links "$WHEELHOUSE")
  "${pip[@]}" --no-deps -e . || return 1   # sevnet itself, editable: the tests run this tree
  "${pip[@]}" --no-deps "pytorchvideo==0.1.5" || echo "note: pytorchvideo not in the wheelhouse: no X3D rows" >&2
  # All requirements in one go; if the wheelhouse lacks some (a slim one: openvino, nncf, ruff), each on
  # its own, so that the missing ones are reported and the rest still installs. torch and torchvision
  # are satisfied by the torch Python's own.
  local reqs
  reqs=$("$VENV/bin/python" - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
print("\n".join(r.replace(" ", "") for r in project["dependencies"] + extras["deploy"] + extras["peers"] + extras["dev"]))
EOF
  ) || return 1
  MISSING=""
  # shellcheck disable=SC2086
  "${pip[@]}" $reqs && return 0
  for req in $reqs; do
    "${pip[@]}" "$req" || MISSING="$MISSING ${req%%[<>=]*}"
  done
}
if [ "${GPU_CHECK_REUSE_VENV:-0}" = 1 ] && [ -x "$VENV/bin/python" ]; then
  say "- reusing $VENV (GPU_CHECK_REUSE_VENV=1)"
elif install >>"$REPORT/install.log" 2>&1; then
  TORCH_AFTER=$("$VENV/bin/python" -c "import torch; print(torch.__version__, torch.__file__)")
  [ "$TORCH_AFTER" = "$TORCH_BEFORE" ] || { say "- error: torch changed: $TORCH_AFTER"; exit 1; }
  say "- installed from $(basename "$WHEELHOUSE")/ in $(elapsed) s, torch untouched${MISSING:+; not in the wheelhouse:$MISSING}"
else
  say "- error: installation failed (reports/gpu_check/install.log):"; tail -5 "$REPORT/install.log"; exit 1
fi
VPY=$VENV/bin/python
export PATH=$VENV/bin:$PATH PYTHONUNBUFFERED=1

# ---- the test suite -----------------------------------------------------------------------------
DEMO_S=150; [ "${GPU_CHECK_DEMO:-auto}" = quick ] && DEMO_S=60
reserve=$(((1 - SKIP_DEMO) * DEMO_S + (1 - SKIP_BENCH) * 150 + LOADER_BENCH * 120))   # the steps after the tests
cap=$((BUDGET - $(elapsed) - reserve))
if [ "$SKIP_TESTS" = 0 ] && [ "$cap" -lt 60 ]; then
  say "- tests skipped: $cap s left for them in the $BUDGET s budget"
elif [ "$SKIP_TESTS" = 0 ]; then
  xdist=()
  if "$VPY" -c "import xdist" 2>/dev/null; then xdist=(-n "${GPU_CHECK_WORKERS:-8}"); fi
  t0=$(date +%s)
  # shellcheck disable=SC2086  # GPU_CHECK_PYTEST_ARGS: extra pytest arguments (a file, -k ...), split on spaces
  OMP_NUM_THREADS=2 timeout -k 10 "$cap" "$VPY" -m pytest -q -p no:cacheprovider "${xdist[@]}" \
    ${GPU_CHECK_PYTEST_ARGS:-} >"$REPORT/tests.log" 2>&1
  rc=$?
  line=$(grep -E "^(=+ )?[0-9]+ [a-z]+.* in [0-9.]+s" "$REPORT/tests.log" | tail -1 | sed 's/=//g')
  [ "$rc" = 124 ] && line="stopped at the ${cap} s cap; $(grep -c '' "$REPORT/tests.log") lines of output"
  say "- tests (${xdist[*]:-serial}, $(($(date +%s) - t0)) s): ${line:-no summary line, exit $rc}"
  grep -E "^(FAILED|ERROR) " "$REPORT/tests.log" | head -20 | sed 's/^/    /' | tee -a "$SUMMARY"
fi

# ---- sevnet demo ----------------------------------------------------------------------------------
if [ "$SKIP_DEMO" = 0 ]; then
  left=$((BUDGET - $(elapsed) - reserve + DEMO_S))
  mode=(); { [ "$left" -lt 140 ] || [ "${GPU_CHECK_DEMO:-auto}" = quick ]; } && mode=(--quick)
  t0=$(date +%s)
  timeout -k 10 "$((left > 30 ? left : 30))" "$VPY" -m sevnet demo "${mode[@]}" --out "$REPORT/demo" >"$REPORT/demo.log" 2>&1
  rc=$?
  if [ "$rc" = 0 ] && [ -f "$REPORT/demo/metrics.json" ]; then
    say "- demo${mode:+ --quick}: $("$VPY" -c "import json; m = json.load(open('$REPORT/demo/metrics.json')); print(f\"held-out top-1 {m['top1']:.1%}, {m['train_clips_per_s']:.0f} train clips/s, wall time {m['wall_time_s']:.0f} s\")")"
    grep -E "^training on" "$REPORT/demo.log" | head -1 | sed 's/^/    /' | tee -a "$SUMMARY"
  else
    say "- demo FAILED (exit $rc, $(($(date +%s) - t0)) s):"; tail -6 "$REPORT/demo.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  fi
fi

# ---- gpu_bench --quick ---------------------------------------------------------------------------
if [ "$SKIP_BENCH" = 0 ]; then
  left=$((BUDGET - $(elapsed) - 5 - LOADER_BENCH * 120))
  # shellcheck disable=SC2086
  timeout -k 10 "$((left > 60 ? left : 60))" "$VPY" benchmarks/gpu_bench.py ${GPU_CHECK_BENCH_ARGS:---quick} \
    --out "$REPORT/gpu_bench.json" \
    >"$REPORT/bench.log" 2>"$REPORT/bench.err"
  rc=$?
  say "- gpu_bench ${GPU_CHECK_BENCH_ARGS:---quick} (exit $rc):"
  say ""
  if [ -s "$REPORT/bench.log" ]; then tee -a "$SUMMARY" <"$REPORT/bench.log"; else tail -6 "$REPORT/bench.err" | tee -a "$SUMMARY"; fi
fi

# ---- loader_bench with cores - 1 workers ----------------------------------------------------------
if [ "$LOADER_BENCH" = 1 ]; then
  left=$((BUDGET - $(elapsed) - 5))
  workers=$(($(nproc) - 1)); [ "$workers" -gt 15 ] && workers=15
  # shellcheck disable=SC2086
  timeout -k 10 "$((left > 60 ? left : 60))" "$VPY" benchmarks/loader_bench.py --workers "$workers" \
    ${GPU_CHECK_LOADER_ARGS:---videos 96 --rounds 2} >"$REPORT/loader.log" 2>"$REPORT/loader.err"
  rc=$?
  say ""
  say "- loader_bench, $workers workers on $(nproc) cores (exit $rc):"
  say ""
  if [ -s "$REPORT/loader.log" ]; then tee -a "$SUMMARY" <"$REPORT/loader.log"; else tail -6 "$REPORT/loader.err" | tee -a "$SUMMARY"; fi
fi
say ""
say "total $(elapsed) s (budget $BUDGET s); logs in reports/gpu_check/"
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
  cp "$SUMMARY" "$OUT/"
  tar czf "$OUT/gpu_check_logs.tgz" -C "$REPORT" --exclude demo/run . 2>/dev/null || true
fi
