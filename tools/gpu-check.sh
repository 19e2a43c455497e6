#!/usr/bin/env bash
# The GPU check, one prepared script for a machine with an NVIDIA GPU (under 8 minutes on an
# H200 with 16 cores):
#   1. build    the release preset's GPU targets (gpu_test, gpu_bench, pack_gpu_test), -j16
#   2. tests    ctest -L gpu (with the Python package where it builds: fuseopt.torch with
#               bf16, master weights and torch.cuda.amp.GradScaler on the GPU against the
#               interpreter): every rule and option combination on the GPU against the
#               interpreter, misaligned and aliased buffers, bitwise-identical repeats; bf16
#               and f16 storage (nearest and stochastic) through the Optimizer, bit for bit;
#               CUDA kernel packs (exact-SM cubin, else PTX) in fuseopt-pack-run and the API
#   3. bench    build/release/tests/gpu/gpu_bench: fp32 Adam at 2^28 elements against the
#               device-to-device copy bandwidth measured in the same process, bf16 Adam at the
#               same size (param+grad bf16 with f32 states; all bf16, nearest and with a
#               stochastic param: bytes per element and fraction of copy), 16384 tensors of
#               4096 elements, NVRTC time per rule
#   4. torch    tests/gpu/torch_gpu_bench.py: torch.optim.Adam fused=True and foreach=True
#               at the same sizes (skipped when torch is not installed)
# then prints one summary table. Exit status: 0 all passed and every target met; 1 a build or
# test failed; 2 everything passed but a performance target was missed; 4 no usable GPU.
# Knobs: FUSEOPT_JOBS (default 16), PYTHON (default python3), FUSEOPT_GPU_CHECK_QUICK=1
# (fewer timed steps). Logs go to build/release/gpu-check/.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

readonly JOBS="${FUSEOPT_JOBS:-16}"
readonly PYTHON="${PYTHON:-python3}"
readonly BUILD_DIR="build/release"
readonly LOG_DIR="$BUILD_DIR/gpu-check"
readonly script_start=$SECONDS
quick_flag=()
if [[ "${FUSEOPT_GPU_CHECK_QUICK:-0}" == 1 ]]; then quick_flag=(--quick); fi

fmt_duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
die() {
  echo "gpu-check: $*" >&2
  exit 1
}
for tool in cmake ctest timeout awk; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed"
done
mkdir -p "$LOG_DIR"

gpu_line="(nvidia-smi not found)"
if command -v nvidia-smi >/dev/null; then
  gpu_line="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1)" || true
fi
echo "==> GPU: $gpu_line"

# ---- 1. build --------------------------------------------------------------------------------
echo "==> [build] cmake --preset release; build the GPU targets with -j$JOBS"
build_start=$SECONDS
if ! timeout 360 cmake --preset release >"$LOG_DIR/configure.log" 2>&1; then
  tail -n 40 "$LOG_DIR/configure.log" >&2
  die "configuring failed (log: $LOG_DIR/configure.log)"
fi
gpu_targets=(gpu_test gpu_bench pack_gpu_test)
# Where Python's development files and pybind11 are found, the Python package too: its gpu
# test (tests/python/test_torch_cuda_mixed_precision.py) runs fuseopt.torch on the GPU.
if grep -q '^FUSEOPT_PYTHON:BOOL=ON' "$BUILD_DIR/CMakeCache.txt"; then gpu_targets+=(_fuseopt fuseopt); fi
if ! timeout 360 cmake --build "$BUILD_DIR" -j "$JOBS" --target "${gpu_targets[@]}" \
    >"$LOG_DIR/build.log" 2>&1; then
  grep -E "error|Error" "$LOG_DIR/build.log" | head -n 40 >&2 || tail -n 40 "$LOG_DIR/build.log" >&2
  die "building failed (log: $LOG_DIR/build.log)"
fi
build_seconds=$((SECONDS - build_start))
echo "==> [build] done in $(fmt_duration "$build_seconds")"

# ---- 2. tests --------------------------------------------------------------------------------
echo "==> [tests] ctest -L gpu"
tests_start=$SECONDS
tests_rc=0
timeout 300 ctest --test-dir "$BUILD_DIR" -L gpu --output-on-failure --timeout 280 -j 4 \
  >"$LOG_DIR/ctest.log" 2>&1 || tests_rc=$?
tests_seconds=$((SECONDS - tests_start))
# "100% tests passed, 0 tests failed out of 9" -> "9 run, 0 failed"
tests_line="$(awk '/tests failed out of/ { print $NF " run, " $(NF-5) " failed" }' "$LOG_DIR/ctest.log" | tail -n 1)"
skipped="$(grep -c '(Skipped)' "$LOG_DIR/ctest.log" || true)"
if ((tests_rc != 0)); then
  grep -E 'Failure|FAILED|differences|Expected|Which is' "$LOG_DIR/ctest.log" | head -n 40 >&2 || true
fi
echo "==> [tests] ${tests_line:-no result} ($skipped skipped) in $(fmt_duration "$tests_seconds")"

# ---- 3. bench --------------------------------------------------------------------------------
echo "==> [bench] gpu_bench"
bench_rc=0
timeout 180 "$BUILD_DIR/tests/gpu/gpu_bench" "${quick_flag[@]}" >"$LOG_DIR/bench.log" \
  2>"$LOG_DIR/bench.err" || bench_rc=$?
grep -v '^RESULT' "$LOG_DIR/bench.log" || true
if ((bench_rc == 4)); then
  echo "gpu-check: no usable GPU: $(cat "$LOG_DIR/bench.err")" >&2
  exit 4
elif ((bench_rc != 0)); then
  cat "$LOG_DIR/bench.err" >&2
  echo "gpu-check: gpu_bench failed with status $bench_rc" >&2
fi

# ---- 4. torch --------------------------------------------------------------------------------
echo "==> [torch] torch_gpu_bench.py"
torch_rc=0
timeout 150 "$PYTHON" tests/gpu/torch_gpu_bench.py "${quick_flag[@]}" >"$LOG_DIR/torch.log" \
  2>"$LOG_DIR/torch.err" || torch_rc=$?
grep -v '^RESULT' "$LOG_DIR/torch.log" || true
if ((torch_rc != 0)); then
  tail -n 20 "$LOG_DIR/torch.err" >&2
  echo "gpu-check: torch_gpu_bench.py failed with status $torch_rc" >&2
fi

# ---- summary ---------------------------------------------------------------------------------
# value NAME: the number a RESULT line gave, or empty.
value() { awk -v n="$1" '$1 == "RESULT" && $2 == n { print $3; exit }' "$LOG_DIR/bench.log" "$LOG_DIR/torch.log"; }
word() { awk -v n="$1" '$1 == "RESULT" && $2 == n { print $4; exit }' "$LOG_DIR/bench.log"; }
# ratio A B: A / B with two decimals, or empty.
ratio() {
  if [[ -n "$1" && -n "$2" ]]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b }'; fi
}
# at_least X MIN: "ok", "MISSED" or "n/a" (no value).
at_least() {
  if [[ -z "$1" ]]; then echo "n/a"; return; fi
  if awk -v x="$1" -v m="$2" 'BEGIN { exit !(x >= m) }'; then echo "ok"; else echo "MISSED"; fi
}
row() { printf '| %-44s | %-30s | %-9s | %-6s |\n' "$1" "$2" "$3" "$4"; }

copy="$(value copy_bandwidth)"
fraction="$(value adam_2p28_best_fraction_of_copy)"
default_fraction="$(value adam_2p28_default_fraction_of_copy)"
ours_large="$(value adam_2p28_best_ms)"
ours_many="$(value adam_16384x4096_best_ms)"
fused_large="$(value torch_fused_2p28_ms)"
foreach_large="$(value torch_foreach_2p28_ms)"
fused_many="$(value torch_fused_16384x4096_ms)"
foreach_many="$(value torch_foreach_16384x4096_ms)"
speedup_fused_large="$(ratio "$fused_large" "$ours_large")"
speedup_foreach_large="$(ratio "$foreach_large" "$ours_large")"
speedup_fused_many="$(ratio "$fused_many" "$ours_many")"
speedup_foreach_many="$(ratio "$foreach_many" "$ours_many")"
tests_status="ok"
((tests_rc == 0)) || tests_status="FAILED"
((bench_rc == 0)) || tests_status="FAILED"
# The benchmark found a GPU, so a skipped GPU test means something is wrong.
((skipped == 0)) || tests_status="FAILED"

s_fraction="$(at_least "$fraction" 0.9)"
s_fused_large="$(at_least "$speedup_fused_large" 1.0)"
s_foreach_large="$(at_least "$speedup_foreach_large" 1.0)"
s_fused_many="$(at_least "$speedup_fused_many" 1.2)"
total=$((SECONDS - script_start))
s_total="$(at_least $((480 - total)) 0)"
missed=0
for status in "$s_fraction" "$s_fused_large" "$s_foreach_large" "$s_fused_many" "$s_total"; do
  if [[ "$status" == MISSED ]]; then missed=$((missed + 1)); fi
done

echo
echo "==> fuseopt GPU check: $gpu_line"
row "check" "result" "target" "status"
row "--------------------------------------------" "------------------------------" "---------" "------"
row "build (release preset, -j$JOBS)" "$(fmt_duration "$build_seconds")" "" "ok"
row "ctest -L gpu" "${tests_line:-no result}, $skipped skipped" "all pass" "$tests_status"
row "device-to-device copy bandwidth" "${copy:-?} GB/s" "" ""
row "Adam fp32 2^28: fraction of copy, best shape" "${fraction:-?} ($(word adam_2p28_best_shape))" ">= 0.90" "$s_fraction"
row "Adam fp32 2^28: fraction of copy, default" "${default_fraction:-?} ($(value adam_2p28_bytes_per_element) B/element)" "" ""
# bf16 Adam (default shape): bytes moved per element, fraction of copy bandwidth, ms/step.
bf16_row() {
  local fraction_value
  fraction_value="$(value "$2_2p28_fraction_of_copy")"
  row "$1" "${fraction_value:-?} ($(value "$2_2p28_bytes_per_element") B/el, $(value "$2_2p28_gpu_ms") ms)" "" ""
}
bf16_row "Adam bf16 p+g, f32 states: frac. of copy" adam_bf16pg
bf16_row "Adam all bf16: fraction of copy" adam_bf16all
bf16_row "Adam all bf16, stochastic param: frac." adam_bf16all_sr
row "loss-scaled step() holds host: host / device" "$(value adam_loss_scaled_decided_on_host_step_call_ms) / $(value adam_loss_scaled_decided_on_device_step_call_ms) ms" "" ""
row "Adam 2^28 ms/step: ours / torch fused" "${ours_large:-?} / ${fused_large:-n/a} (${speedup_fused_large:-?}x)" ">= 1.0x" "$s_fused_large"
row "Adam 2^28 ms/step: ours / torch foreach" "${ours_large:-?} / ${foreach_large:-n/a} (${speedup_foreach_large:-?}x)" ">= 1.0x" "$s_foreach_large"
row "16384x4096 ms/step: ours / torch fused" "${ours_many:-?} / ${fused_many:-n/a} (${speedup_fused_many:-?}x)" ">= 1.2x" "$s_fused_many"
row "16384x4096 ms/step: ours / torch foreach" "${ours_many:-?} / ${foreach_many:-n/a} (${speedup_foreach_many:-?}x)" "" ""
row "NVRTC compile per rule: mean / max" "$(value jit_mean_s) s / $(value jit_max_s) s" "" ""
row "total time" "$(fmt_duration "$total")" "< 8m" "$s_total"
if [[ "$(value torch_available)" != 1 ]]; then
  echo "(no torch comparison: $(head -n 1 "$LOG_DIR/torch.log" 2>/dev/null))"
fi
echo "logs: $LOG_DIR"

if [[ "$tests_status" != ok ]]; then exit 1; fi
if ((missed > 0)); then
  echo "gpu-check: $missed performance target(s) missed"
  exit 2
fi
exit 0
