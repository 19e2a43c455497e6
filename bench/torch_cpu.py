#!/usr/bin/env python3
"""torch.optim.Adam on the CPU, on the sizes of fuseopt's benchmarks (docs/performance.md).

Runs Adam three ways where the installed torch has them: the for-loop implementation
(foreach=False), the multi-tensor one (foreach=True) and the fused kernel (fused=True; torch
only has it on the CPU from 2.4 on, and this script says so when it is missing). Each runs
on 1 x 2^25, 4096 x 4096 and 65536 x 256 float32 tensors with torch.set_num_threads(2), one
warm-up step (it creates the states) and then a few timed steps; it prints the median step
time, ns per element and GB/s in fuseopt's bytes convention: 28 bytes per element for fp32
Adam (param, exp_avg, exp_avg_sq read and written, grad read). That counts the traffic a
fused kernel needs; torch's unfused paths move more, which is what the figures show.

    /usr/bin/python3 bench/torch_cpu.py            # under a minute on 2 cores
    /usr/bin/python3 bench/torch_cpu.py --json
"""

import argparse
import inspect
import json
import platform
import statistics
import sys
import time

BYTES_PER_ELEMENT = 28
DEFAULT_CONFIGS = "1x33554432,4096x4096,65536x256"


def parse_configs(text):
    configs = []
    for item in text.split(","):
        tensors, _, numel = item.strip().partition("x")
        try:
            configs.append((int(tensors), int(numel)))
        except ValueError:
            sys.exit(f"torch_cpu.py: error: --configs takes KxN,..., not {item!r}")
    return configs


def fused_support(torch):
    """(True, '') when fused=True works on CPU tensors, else (False, why)."""
    if "fused" not in inspect.signature(torch.optim.Adam.__init__).parameters:
        return False, f"torch {torch.__version__} has no fused Adam"
    try:
        p = torch.zeros(4, requires_grad=True)
        p.grad = torch.ones(4)
        torch.optim.Adam([p], fused=True).step()
    except (RuntimeError, ValueError, TypeError) as e:
        return False, f"torch {torch.__version__} has no fused Adam on the CPU ({e})"
    return True, ""


def make_params(torch, tensors, numel):
    gen = torch.Generator().manual_seed(0)
    params = []
    for _ in range(tensors):
        p = torch.empty(numel).uniform_(-1.0, 1.0, generator=gen).requires_grad_()
        p.grad = torch.empty(numel).uniform_(-1e-2, 1e-2, generator=gen)
        params.append(p)
    return params


def bench_one(torch, impl, tensors, numel, steps):
    params = make_params(torch, tensors, numel)
    kwargs = {"lr": 1e-3}
    if impl == "forloop":
        kwargs["foreach"] = False
    elif impl == "foreach":
        kwargs["foreach"] = True
    else:
        kwargs["fused"] = True
    opt = torch.optim.Adam(params, **kwargs)
    with torch.no_grad():
        opt.step()  # warm-up: creates exp_avg and exp_avg_sq
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - start)
    step = statistics.median(times)
    elements = tensors * numel
    ns = step * 1e9 / elements
    return {
        "impl": impl,
        "tensors": tensors,
        "numel": numel,
        "elements": elements,
        "steps": steps,
        "step_ms": step * 1e3,
        "min_step_ms": min(times) * 1e3,
        "max_step_ms": max(times) * 1e3,
        "ns_per_element": ns,
        "gb_per_s": BYTES_PER_ELEMENT / ns,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2)")
    parser.add_argument("--steps", type=int, default=10,
                        help="timed steps per run (10; the for-loop and foreach on more than "
                             "10000 tensors take at most 5)")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help=f"KxN tensors x elements, comma-separated ({DEFAULT_CONFIGS})")
    parser.add_argument("--impl", action="append", choices=["forloop", "foreach", "fused"],
                        help="run only these implementations (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    try:
        import torch
    except ImportError:
        sys.exit("torch_cpu.py: error: no torch for " + sys.executable +
                 " (Debian: apt-get install python3-torch; run with /usr/bin/python3)")

    torch.set_num_threads(args.threads)
    has_fused, fused_note = fused_support(torch)
    impls = args.impl or ["forloop", "foreach", "fused"]
    results = []
    for tensors, numel in parse_configs(args.configs):
        for impl in impls:
            if impl == "fused" and not has_fused:
                continue
            steps = args.steps
            if impl != "fused" and tensors > 10000:
                steps = max(1, min(steps, 5))
            results.append(bench_one(torch, impl, tensors, numel, steps))
            if not args.json:
                r = results[-1]
                print(f"{impl:8s} {tensors:6d} x {numel:<9d} {r['step_ms']:10.2f} ms/step "
                      f"{r['ns_per_element']:8.3f} ns/element {r['gb_per_s']:7.2f} GB/s "
                      f"(median of {steps}, min {r['min_step_ms']:.2f} max "
                      f"{r['max_step_ms']:.2f} ms)", flush=True)

    summary = {
        "torch_version": torch.__version__,
        "python": sys.executable,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "bytes_per_element": BYTES_PER_ELEMENT,
        "fused_available": has_fused,
        "fused_note": fused_note,
        "results": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{BYTES_PER_ELEMENT} bytes/element")
        if not has_fused and "fused" in impls:
            print(f"fused: not run: {fused_note}")


if __name__ == "__main__":
    main()
