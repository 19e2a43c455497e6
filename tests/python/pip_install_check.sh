#!/usr/bin/env bash
# Checks `pip install REPO`: a venv (with Debian's torch and numpy visible through
# --system-site-packages) at VENV, pip installs the repository (scikit-build-core and pybind11
# come from PyPI; the build compiles the libraries the extension needs, -j2), then imports
# the installed package from outside the source tree and runs one torch parity case.
# Usage: pip_install_check.sh REPO VENV. Exits 77 (skipped) when /usr/bin/python3 has no
# venv module.
set -euo pipefail
repo="$1"
venv="$2"
python=/usr/bin/python3

"$python" -c 'import venv, ensurepip' 2>/dev/null || { echo "skipped: no python3-venv"; exit 77; }
rm -rf "$venv"
"$python" -m venv --system-site-packages "$venv"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
# Its own build directory, so that it never shares one with a developer's `pip install .`.
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  --config-settings=build-dir="$venv/build" "$repo"

cd "$venv"  # away from the source tree: the installed package must be the one imported
"$venv/bin/python" - <<'PY'
import fuseopt, fuseopt.torch, os
where = os.path.dirname(fuseopt.__file__)
assert "site-packages" in where, where
print("fuseopt", fuseopt.__version__, "installed in", where)
PY
# One parity case against torch.optim.AdamW through the installed package.
PYTHONPATH="$repo/tests/python" "$venv/bin/python" -m unittest -v \
  test_torch_parity.ParityTest.test_adamw
