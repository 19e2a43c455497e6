#!/usr/bin/env bash
# The whole fuseopt test suite on a fresh Debian 12 machine (this is what CI runs):
#   1. setup    install the Debian packages (tools/setup.sh)
#   2. release  build the release preset with the Python package, run every test (labels
#               torch and slow included; python_pip_install checks `pip install .`)
#   3. asan     build with ASan+UBSan, run every test except label `slow`
#   4. fuzz     build the libFuzzer targets with clang, run each one for a while
# Every stage runs even if an earlier one failed (setup excepted); the exit status is 1 if
# anything failed. Developer knobs (CI sets none of them):
#   FUSEOPT_SKIP_SETUP=1 FUSEOPT_SKIP_RELEASE=1 FUSEOPT_SKIP_ASAN=1 FUSEOPT_SKIP_FUZZ=1
#   FUSEOPT_FUZZ_SECONDS=N   seconds per fuzz target (default 60)
#   FUSEOPT_JOBS=N           build parallelism (default: nproc)
#   FUSEOPT_TEST_JOBS=N      ctest parallelism (default: 2)
# shellcheck disable=SC2317  # stage functions are called through run_stage
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

readonly JOBS="${FUSEOPT_JOBS:-$(nproc)}"
readonly TEST_JOBS="${FUSEOPT_TEST_JOBS:-2}"
readonly FUZZ_SECONDS="${FUSEOPT_FUZZ_SECONDS:-60}"
readonly FUZZ_DIR="build/fuzz/tests/fuzz"

summary=()
failed=0
readonly script_start=$SECONDS

fmt_duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# run_stage NAME COMMAND...: runs COMMAND in a subshell with `set -e`, prints a timing line
# and records the result; returns COMMAND's status.
run_stage() {
  local name="$1"; shift
  local start=$SECONDS rc
  printf '\n==> [%s] start\n' "$name"
  set +e
  (set -euo pipefail; "$@")
  rc=$?
  set -e
  local took; took="$(fmt_duration $((SECONDS - start)))"
  if ((rc == 0)); then
    printf '==> [%s] passed in %s\n' "$name" "$took"
    summary+=("$(printf '  %-15s passed   %s' "$name" "$took")")
  else
    printf '==> [%s] FAILED (exit %d) in %s\n' "$name" "$rc" "$took"
    summary+=("$(printf '  %-15s FAILED   %s (exit %d)' "$name" "$took" "$rc")")
    failed=1
  fi
  return "$rc"
}

note_stage() {  # note_stage NAME WHY: a stage that did not run
  printf '==> [%s] %s\n' "$1" "$2"
  summary+=("$(printf '  %-15s %s' "$1" "$2")")
}

print_summary() {
  printf '\n==> summary (total %s)\n' "$(fmt_duration $((SECONDS - script_start)))"
  printf '%s\n' "${summary[@]}"
  if ((failed)); then echo "==> FAILED"; else echo "==> all stages passed"; fi
}

build_preset() {
  local extra=()
  # The release build must build and test the Python package (python/): a missing
  # dependency is then an error, not a silently smaller build.
  [[ "$1" == release ]] && extra=(-DFUSEOPT_PYTHON=ON)
  cmake --preset "$1" "${extra[@]}"
  cmake --build --preset "$1" -j "$JOBS"
}

test_release() {
  ctest --preset release -j "$TEST_JOBS"
}

test_asan() {
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  ctest --preset asan -j "$TEST_JOBS" -LE slow
}

# Runs every fuzz_* target for FUZZ_SECONDS on a scratch copy of its seed corpus
# (tests/fuzz/corpus/<target>/), so the repository is never modified. Crash inputs land in
# build/fuzz/artifacts/<target>/, full logs in build/fuzz/logs/<target>.log.
run_fuzzers() {
  local targets=()
  if [[ -d "$FUZZ_DIR" ]]; then
    mapfile -t targets < <(find "$FUZZ_DIR" -maxdepth 1 -type f -name 'fuzz_*' -perm -u+x | sort)
  fi
  if ((${#targets[@]} == 0)); then
    echo "fuzz: error: no fuzz_* executables found in $FUZZ_DIR" >&2
    return 1
  fi
  echo "fuzz: ${#targets[@]} target(s), ${FUZZ_SECONDS}s each"

  # Not local: the EXIT trap of this stage's subshell runs after the function has returned.
  fuzz_scratch="$(mktemp -d "${TMPDIR:-/tmp}/fuseopt-fuzz.XXXXXX")"
  trap 'rm -rf "$fuzz_scratch"' EXIT
  mkdir -p build/fuzz/logs
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

  local bin name corpus artifacts log start rc runs fuzz_failed=0
  for bin in "${targets[@]}"; do
    name="$(basename "$bin")"
    corpus="$fuzz_scratch/$name"
    artifacts="build/fuzz/artifacts/$name"
    log="build/fuzz/logs/$name.log"
    mkdir -p "$corpus" "$artifacts"
    if [[ -d "tests/fuzz/corpus/$name" ]]; then
      cp -R "tests/fuzz/corpus/$name/." "$corpus/"
    fi
    # The rule fuzzer starts from every real rule, good and bad.
    if [[ "$name" == fuzz_rule_parser ]]; then
      cp rules/*.opt tests/frontend/diagnostics/*.opt "$corpus/"
    fi
    local args=(-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048
                -artifact_prefix="$artifacts/" -print_final_stats=1)
    if [[ -f "tests/fuzz/$name.dict" ]]; then
      args+=(-dict="tests/fuzz/$name.dict")
    fi
    start=$SECONDS
    set +e
    # The outer timeout only guards against a hung fuzzer; libFuzzer stops itself.
    timeout --signal=KILL $((FUZZ_SECONDS + 300)) "$bin" "${args[@]}" "$corpus" >"$log" 2>&1
    rc=$?
    set -e
    runs="$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -n 1 || true)"
    if ((rc == 0)); then
      printf 'fuzz: %-32s ok      %s (%s, corpus %d files)\n' "$name" \
        "$(fmt_duration $((SECONDS - start)))" "${runs:-no run count}" \
        "$(find "$corpus" -type f | wc -l)"
    else
      printf 'fuzz: %-32s FAILED  exit %d after %s; last lines of %s:\n' "$name" "$rc" \
        "$(fmt_duration $((SECONDS - start)))" "$log"
      tail -n 60 "$log" | sed 's/^/    /'
      find "$artifacts" -type f | sed 's/^/    artifact: /'
      fuzz_failed=1
    fi
  done
  return "$fuzz_failed"
}

echo "==> fuseopt test suite in $repo_root (CI=${CI:-false}, $(nproc) cores, build -j$JOBS, ctest -j$TEST_JOBS)"

# 1. setup: nothing else can run without it.
if [[ "${FUSEOPT_SKIP_SETUP:-0}" == 1 ]]; then
  note_stage setup "skipped (FUSEOPT_SKIP_SETUP=1)"
elif ! run_stage setup bash tools/setup.sh; then
  print_summary
  exit 1
fi

# 2-4: build then test for each preset; tests are skipped when their build failed.
if [[ "${FUSEOPT_SKIP_RELEASE:-0}" == 1 ]]; then
  note_stage release "skipped (FUSEOPT_SKIP_RELEASE=1)"
elif run_stage "release build" build_preset release; then
  run_stage "release tests" test_release || true
else
  note_stage "release tests" "not run (build failed)"
fi

if [[ "${FUSEOPT_SKIP_ASAN:-0}" == 1 ]]; then
  note_stage asan "skipped (FUSEOPT_SKIP_ASAN=1)"
elif run_stage "asan build" build_preset asan; then
  run_stage "asan tests" test_asan || true
else
  note_stage "asan tests" "not run (build failed)"
fi

if [[ "${FUSEOPT_SKIP_FUZZ:-0}" == 1 ]]; then
  note_stage fuzz "skipped (FUSEOPT_SKIP_FUZZ=1)"
elif run_stage "fuzz build" build_preset fuzz; then
  run_stage "fuzz run" run_fuzzers || true
else
  note_stage "fuzz run" "not run (build failed)"
fi

print_summary
exit "$failed"
