#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing fuseopt needs.
# Idempotent: when everything is already installed, apt is not touched at all.
# Runs as root (no sudo). Nothing outside Debian's package archive is downloaded.
set -euo pipefail

readonly PACKAGES=(
  cmake make g++ pkg-config
  clang libclang-rt-14-dev           # clang 14 with the libFuzzer and sanitizer runtimes
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libsqlite3-dev libhalide14-0-dev libsodium-dev
  python3 python3-numpy python3-torch
  python3-dev python3-venv pybind11-dev libdlpack-dev   # the Python package (python/)
  python3-sklearn python3-matplotlib                    # examples/python/train_digits.py
)

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

is_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" == ii* ]]
}

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script expects Debian 12 (bookworm)"
if [[ -r /etc/os-release ]]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  if [[ "${ID:-}" != debian || "${VERSION_ID:-}" != 12 ]]; then
    log "note: this script targets Debian 12; found ${PRETTY_NAME:-unknown}, continuing anyway"
  fi
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  is_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  log "all ${#PACKAGES[@]} required Debian packages are already installed; skipping apt"
else
  [[ "$(id -u)" == 0 ]] || die "missing packages (${missing[*]}) and not running as root; run this script as root"
  log "installing ${#missing[@]} missing package(s): ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get update"
  apt-get update -q
  log "apt-get install"
  apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
  for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || die "package $pkg is still not installed after apt-get install"
  done
  log "all required Debian packages installed"
fi

# The fuzz build links clang's libFuzzer runtime; make sure it really is there.
fuzzer_rt=""
if command -v clang >/dev/null 2>&1; then
  candidate="$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)"
  [[ -f "$candidate" ]] && fuzzer_rt="$candidate"
fi
if [[ -z "$fuzzer_rt" ]]; then
  for candidate in /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a; do
    [[ -f "$candidate" ]] && fuzzer_rt="$candidate" && break
  done
fi
[[ -n "$fuzzer_rt" ]] || die "libFuzzer runtime libclang_rt.fuzzer-x86_64.a not found (package libclang-rt-14-dev)"
log "libFuzzer runtime: $fuzzer_rt"

# CUDA is optional and never installed here; later parts of fuseopt use it when present.
if [[ -d /usr/local/cuda ]]; then
  log "CUDA toolkit found at /usr/local/cuda"
else
  log "note: no CUDA toolkit at /usr/local/cuda (optional; GPU parts will report its absence)"
fi
