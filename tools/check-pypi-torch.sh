#!/usr/bin/env bash
# Checks the fuseopt Python package against a current PyTorch 2.x from PyPI, apart from
# Debian's python3-torch that the test suite uses:
#
#   1. a virtual environment under WORKDIR (default: a new temporary directory);
#   2. the newest torch 2.x CPU wheel: from PyTorch's CPU-only index when it can be reached
#      (about 200 MB), else from plain PyPI (whose Linux wheel also pulls the CUDA libraries,
#      a few GB); then numpy, scikit-learn and matplotlib;
#   3. `pip install .` of this repository (builds the C++ library and the extension);
#   4. the package's tests (tests/python, run by unittest discovery),
#      examples/python/train_digits.py --quick and bench/torch_compare.py --quick (its
#      correctness check against torch.optim), against that torch;
#   5. torch's own CPU GradScaler (torch.amp.GradScaler("cpu"), torch >= 2.3) driving
#      fuseopt.torch through the fused-optimizer contract, next to torch.optim.AdamW under
#      the same scaler: that test must run, not be skipped.
#
# Usage: tools/check-pypi-torch.sh [WORKDIR]
# Environment: PYTHON (the interpreter for the venv, default /usr/bin/python3),
#   FUSEOPT_TORCH_SPEC (pip requirement, default "torch>=2"), FUSEOPT_TORCH_INDEX (an index
#   URL to take torch from, skipping the choice above), FUSEOPT_JOBS (build jobs, default nproc),
#   CMAKE_ARGS (passed to CMake by scikit-build-core), FUSEOPT_CLI (the `fuseopt` program for
#   the tests that compare with it; default build/release's where it is built).
# A second run with the same WORKDIR reuses its venv (pip skips what is installed there).
# Exits non-zero at the first step that fails, naming it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
TORCH_SPEC=${FUSEOPT_TORCH_SPEC:-torch>=2}
CPU_INDEX=https://download.pytorch.org/whl/cpu
export CMAKE_BUILD_PARALLEL_LEVEL=${FUSEOPT_JOBS:-$(nproc)}

if [[ $# -gt 1 || ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/fuseopt-pypi-torch.XXXXXX")}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

stage() { printf '\n== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }
die() { printf 'check-pypi-torch.sh: error: %s\n' "$1" >&2; exit 1; }

stage "virtual environment in $WORK/venv"
"$PYTHON" -m venv "$WORK/venv" || die "$PYTHON -m venv failed (Debian: apt-get install python3-venv)"
PY=$WORK/venv/bin/python
"$PY" -m pip --version

stage "torch ($TORCH_SPEC)"
if [[ -n ${FUSEOPT_TORCH_INDEX:-} ]]; then
  "$PY" -m pip install --index-url "$FUSEOPT_TORCH_INDEX" "$TORCH_SPEC" || die "torch from $FUSEOPT_TORCH_INDEX"
elif "$PY" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=15)" \
       "$CPU_INDEX" 2>/dev/null; then
  # The CPU-only wheel; its dependencies (filelock, sympy, ...) come from PyPI.
  "$PY" -m pip install --index-url "$CPU_INDEX" --extra-index-url https://pypi.org/simple \
    "$TORCH_SPEC" || die "torch from the CPU index"
else
  echo "PyTorch's CPU-only index cannot be reached from here: taking torch from PyPI" \
       "(its Linux wheel brings the CUDA libraries: a few GB)"
  "$PY" -m pip install "$TORCH_SPEC" || die "torch from PyPI"
fi
"$PY" -m pip install numpy scikit-learn matplotlib || die "numpy, scikit-learn, matplotlib"
"$PY" -c 'import sys, torch
print("torch", torch.__version__, "from", torch.__file__)
sys.exit(0 if int(torch.__version__.split(".")[0]) >= 2 else "torch is older than 2.x")'

stage "pip install $REPO"
# A build directory of its own under WORKDIR, never the repository's build/pip (a developer's
# `pip install .`); ccache where there is one, unless CMAKE_ARGS says otherwise.
if [[ -z ${CMAKE_ARGS:-} ]] && command -v ccache >/dev/null; then
  export CMAKE_ARGS="-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
fi
"$PY" -m pip install --config-settings=build-dir="$WORK/build" "$REPO" \
  || die "pip install of the repository"
# From $WORK, not the repository, so that `import fuseopt` finds the installed package.
cd "$WORK"
"$PY" -c 'import fuseopt, fuseopt.torch, torch
print("fuseopt", getattr(fuseopt, "__version__", "?"), "from", fuseopt.__file__)'

stage "tests/python (unittest discovery)"
[[ -d $REPO/tests/python ]] || die "no tests/python in $REPO"
# As tests/python/CMakeLists.txt sets them: a scratch kernel cache, so that tuning in a test
# leaves the user's cache alone, and the fuseopt program for the tests that compare with it
# where a build tree has one (FUSEOPT_CLI=...; they skip without it).
export FUSEOPT_CACHE=$WORK/cache.db
if [[ -z ${FUSEOPT_CLI:-} && -x $REPO/build/release/tools/fuseopt/fuseopt ]]; then
  export FUSEOPT_CLI=$REPO/build/release/tools/fuseopt/fuseopt
fi
echo "FUSEOPT_CACHE=$FUSEOPT_CACHE FUSEOPT_CLI=${FUSEOPT_CLI:-(not set)}"
"$PY" -m unittest discover -s "$REPO/tests/python" -t "$REPO/tests/python" -v \
  || die "tests/python failed against torch $("$PY" -c 'import torch; print(torch.__version__)')"

stage "examples/python/train_digits.py --quick"
rm -f "$WORK/digits.png"
"$PY" "$REPO/examples/python/train_digits.py" --quick --plot "$WORK/digits.png" \
  || die "train_digits.py failed"
[[ -s $WORK/digits.png ]] || die "train_digits.py wrote no $WORK/digits.png"

stage "bench/torch_compare.py --quick"
# fuseopt against this torch's for-loop, foreach and fused optimizers (torch 2.x has fused
# CPU kernels): the correctness check must pass; the timings are only printed.
"$PY" "$REPO/bench/torch_compare.py" --quick || die "torch_compare.py failed"

stage "torch.amp.GradScaler('cpu') driving fuseopt.torch"
# Discovery above counts a skipped test as passing; here GradScalerTest must run. It checks
# that torch's scaler hands fuseopt the scale and found_inf (the grad_scale and found_inf
# attributes), that steps equal torch.optim.AdamW's under the same scaler, and that an inf
# skips every group and lowers the scale as it does for AdamW.
(cd "$REPO/tests/python" && "$PY" - <<'EOF'
import sys
import unittest

import test_torch_mixed_precision as cases

suite = unittest.defaultTestLoader.loadTestsFromTestCase(cases.GradScalerTest)
result = unittest.TextTestRunner(verbosity=2).run(suite)
if result.skipped:
    sys.exit("GradScalerTest was skipped: " + "; ".join(reason for _, reason in result.skipped))
sys.exit(0 if result.wasSuccessful() else 1)
EOF
) || die "torch.amp.GradScaler('cpu') with fuseopt.torch failed"

stage "done"
"$PY" -c 'import fuseopt, torch, platform
print("fuseopt", fuseopt.__version__, "passes its tests, the digits example, torch_compare and",
      "the CPU GradScaler with torch",
      torch.__version__, "(Python " + platform.python_version() + ")")'
