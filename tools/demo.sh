#!/usr/bin/env bash
# fuseopt's main job on a fresh Debian 12 machine: install what is needed, build the release
# preset, and run `fuseopt demo` (checks every built-in rule, prints AdaMomentum's IR, runs it
# on the interpreter, compiles it for this CPU, tunes it and times it against the memory
# bandwidth). Extra arguments go to `fuseopt demo`.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

bash tools/setup.sh

echo "demo: configuring and building the release preset"
cmake --preset release
cmake --build --preset release -j "$(nproc)"

echo "demo: running fuseopt demo"
exec build/release/tools/fuseopt/fuseopt demo "$@"
