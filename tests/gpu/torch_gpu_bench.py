#!/usr/bin/env python3
"""torch.optim.Adam (fused=True and foreach=True) at the sizes of gpu_bench, for
tools/gpu-check.sh: one fp32 tensor of 2^28 elements, and 16384 tensors of 4096 elements.

Prints readable lines and "RESULT name value unit" lines. Without torch or a GPU it prints
"RESULT torch_available 0" and exits 0, so the summary can say why there is no comparison.

Usage: torch_gpu_bench.py [--quick]
"""
import sys
import time


def result(name, value, unit=""):
    print(f"RESULT {name} {value:.6g} {unit}".rstrip(), flush=True)


def bench(torch, shapes, implementation, warmup, steps):
    """Median GPU time and mean wall time per step, in milliseconds."""
    device = torch.device("cuda")
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.full(shape, 0.0115, device=device, dtype=torch.float32))
        p.grad = torch.full_like(p, 0.0029)
        params.append(p)
    optimizer = torch.optim.Adam(params, lr=1e-3, fused=implementation == "fused",
                                 foreach=implementation == "foreach")
    for _ in range(warmup):
        optimizer.step()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    gpu = []
    for _ in range(steps):
        start.record()
        optimizer.step()
        end.record()
        end.synchronize()
        gpu.append(start.elapsed_time(end))
    began = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    torch.cuda.synchronize()
    wall = (time.perf_counter() - began) / steps * 1e3
    del optimizer, params
    torch.cuda.empty_cache()
    gpu.sort()
    return gpu[len(gpu) // 2], wall


def main():
    quick = "--quick" in sys.argv[1:]
    try:
        import torch
    except ImportError as error:
        print(f"torch_gpu_bench: torch is not installed ({error})")
        result("torch_available", 0)
        return 0
    if not torch.cuda.is_available():
        print("torch_gpu_bench: torch sees no CUDA device")
        result("torch_available", 0)
        return 0
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) on {torch.cuda.get_device_name()}")
    result("torch_available", 1)
    warmup, steps = 3, (5 if quick else 20)
    cases = [("2p28", [(1 << 28,)]), ("16384x4096", [(4096,)] * 16384)]
    for name, shapes in cases:
        elements = sum(s[0] for s in shapes)
        for implementation in ("fused", "foreach"):
            gpu_ms, wall_ms = bench(torch, shapes, implementation, warmup, steps)
            bandwidth = 28 * elements / (gpu_ms * 1e-3) / 1e9
            print(f"torch Adam {implementation:7s} {name:10s}: {wall_ms:.3f} ms/step wall, "
                  f"{gpu_ms:.3f} ms GPU, {bandwidth:.0f} GB/s")
            result(f"torch_{implementation}_{name}_ms", wall_ms, "ms")
            result(f"torch_{implementation}_{name}_gpu_ms", gpu_ms, "ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
