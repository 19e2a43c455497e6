#!/usr/bin/env python3
"""fuseopt.torch.Optimizer against torch.optim: Adam, AdamW, SGD (momentum) and Adagrad.

For each optimizer and each device (the CPU, and CUDA when torch.cuda.is_available(), where
fuseopt runs its "cuda" backend), this script first checks correctness and then times:

1. Correctness: a few float32 tensors of odd shapes, the same initial values and the same
   gradient at each step (seeded); 3 steps of torch.optim's for-loop implementation
   (foreach=False) and 3 of fuseopt.torch.Optimizer with the same hypers. Every parameter
   must agree elementwise within |fuseopt - torch| <= atol + 1e-5 * |torch|, atol being
   1e-6 * max|torch| over that tensor (as in tests/torch/compare_with_torch.py: elements near
   zero inherit the absolute rounding error of the larger values). A mismatch is reported
   (optimizer, device, tensor, worst element) and the script exits 1 before timing anything.
2. Timing: for each configuration "K x N" (K separately allocated float32 tensors of N
   elements, each with its gradient; every implementation has its own copy), each
   implementation steps W times untimed (states created) and then all of them step S rounds
   in turns, one step each per round, each step timed alone (torch.cuda.synchronize() after
   it on CUDA); the median step time is reported. Taking turns puts the drift of a shared
   machine on all implementations alike; the speedup over the for-loop is the median over
   rounds of the ratio of the two steps of a round. Implementations:
   torch.optim with foreach=False ("for-loop"), foreach=True ("foreach"), fused=True
   ("fused", only where the installed torch accepts it for that optimizer and device: found
   by trying, and the reason printed where not) and fuseopt.

Figures: median step time, ns per element (step time / (K * N)), GB/s and the speedup over the
for-loop (for-loop step / this step, median over the rounds). The optimizers are built before
anything is timed (fuseopt compiles its kernel or finds it in its cache then), so the compile
time is not in any figure. GB/s counts the bytes a single fused pass must move per
element, as fuseopt's own benchmarks do (docs/performance.md): 4 bytes for each float32 buffer
read and 4 for each written, so

    Adam, AdamW      28 bytes: param, exp_avg, exp_avg_sq read and written, grad read
    SGD (momentum)   20 bytes: param, momentum_buffer read and written, grad read
    Adagrad          20 bytes: param, sum read and written, grad read

torch's unfused paths move more than that; the GB/s column shows how far each implementation
is from one fused pass, not the traffic it really causes.

    /usr/bin/python3 bench/torch_compare.py                  # a few minutes on 2 cores
    /usr/bin/python3 bench/torch_compare.py --quick          # smoke run, seconds
    /usr/bin/python3 bench/torch_compare.py --json out.json  # also write every figure as JSON

Needs torch and the fuseopt package (pip install ., or PYTHONPATH at the build tree's python/
folder). Exit codes: 0 done, 1 correctness mismatch or failure, 2 usage error, 77 torch missing
(CTest's skip code).
"""

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

SKIP = 77
RTOL = 1e-5
ATOL_OF_MAX = 1e-6
CHECK_STEPS = 3
CHECK_SHAPES = [(7, 13), (1000,), (3, 5, 4), (1,)]
DEFAULT_CONFIGS = "1x16777216,4096x4096,16384x256"
QUICK_CONFIGS = "1x262144,512x512"
IMPLS = ("for-loop", "foreach", "fused", "fuseopt")

# name -> (torch.optim class name, fuseopt rule, hypers given to both, bytes per element)
OPTIMIZERS = {
    "adam": ("Adam", "adam", {"lr": 1e-3}, 28),
    "adamw": ("AdamW", "adamw", {"lr": 1e-3, "weight_decay": 1e-2}, 28),
    "sgd": ("SGD", "sgd", {"lr": 1e-2, "momentum": 0.9}, 20),
    "adagrad": ("Adagrad", "adagrad", {"lr": 1e-2}, 20),
}


def fail(message):
    print(f"torch_compare.py: error: {message}", file=sys.stderr)
    sys.exit(1)


def parse_configs(text):
    configs = []
    for item in text.split(","):
        tensors, _, numel = item.strip().partition("x")
        try:
            configs.append((int(tensors), int(numel)))
        except ValueError:
            configs = None
            break
        if configs[-1][0] < 1 or configs[-1][1] < 1:
            configs = None
            break
    if not configs:
        print(f"torch_compare.py: error: --configs takes KxN,... with K, N >= 1, not {text!r}",
              file=sys.stderr)
        sys.exit(2)
    return configs


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: configs {QUICK_CONFIGS}, 1 warm-up and 3 timed steps")
    parser.add_argument("--configs", help=f"KxN tensors x elements, comma-separated "
                                          f"(default {DEFAULT_CONFIGS})")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                        help=f"comma-separated subset of {','.join(OPTIMIZERS)}")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto (default): the CPU, and CUDA when torch sees a GPU")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch.set_num_threads and fuseopt's thread count (default 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 2, quick 1)")
    parser.add_argument("--steps", type=int, help="timed steps (default 10, quick 3)")
    parser.add_argument("--json", metavar="PATH",
                        help="also write the results as JSON to PATH ('-': stdout, no table)")
    args = parser.parse_args(argv)
    args.configs = parse_configs(args.configs or (QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS))
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.steps is None:
        args.steps = 3 if args.quick else 10
    args.optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    unknown = [name for name in args.optimizers if name not in OPTIMIZERS]
    if unknown or not args.optimizers:
        parser.error(f"--optimizers: unknown {unknown}; choose from {', '.join(OPTIMIZERS)}")
    if args.threads < 1 or args.warmup < 1 or args.steps < 1:
        parser.error("--threads, --warmup and --steps must be >= 1")
    return args


def import_modules():
    try:
        import torch
    except ImportError as e:
        print(f"torch_compare.py: skipped: no torch for {sys.executable} ({e})", file=sys.stderr)
        sys.exit(SKIP)
    try:
        import fuseopt
        import fuseopt.torch  # noqa: F401
    except ImportError as e:
        fail(f"cannot import fuseopt ({e}); install it with `pip install .` or set PYTHONPATH "
             "to the build tree's python/ folder")
    return torch, fuseopt


class Bench:
    """Builds tensors and optimizers of one kind on one device."""

    def __init__(self, torch, fuseopt, device, threads):
        self.torch = torch
        self.fuseopt = fuseopt
        self.device = device
        self.threads = threads

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def make_params(self, shapes, seed):
        """Leaf tensors uniform in [-1, 1) with gradients uniform in [-0.01, 0.01)."""
        torch = self.torch
        gen = torch.Generator().manual_seed(seed)
        params = []
        for shape in shapes:
            p = torch.empty(shape).uniform_(-1.0, 1.0, generator=gen)
            g = torch.empty(shape).uniform_(-1e-2, 1e-2, generator=gen)
            p = p.to(self.device).requires_grad_()
            p.grad = g.to(self.device)
            params.append(p)
        return params

    def make_optimizer(self, name, impl, params):
        """The optimizer; raises (TypeError, RuntimeError, ValueError) where torch lacks impl."""
        cls_name, rule, hypers, _ = OPTIMIZERS[name]
        if impl == "fuseopt":
            return self.fuseopt.torch.Optimizer(params, rule, backend=self.fuseopt_backend(),
                                                threads=self.threads, **hypers)
        cls = getattr(self.torch.optim, cls_name)
        flag = {"for-loop": {"foreach": False}, "foreach": {"foreach": True},
                "fused": {"fused": True}}[impl]
        return cls(params, **hypers, **flag)

    def fuseopt_backend(self):
        return "cuda" if self.device == "cuda" else "cpu"

    def fuseopt_unavailable(self):
        """None when fuseopt steps a tensor on this device, else why not (its message)."""
        try:
            params = self.make_params([(64,)], seed=0)
            with self.torch.no_grad():
                self.make_optimizer("sgd", "fuseopt", params).step()
            self.sync()
        except Exception as e:  # whatever fuseopt raises, it says why in its message
            return f"{type(e).__name__}: {e}"
        return None

    def fused_support(self, name):
        """(True, '') when torch steps this optimizer with fused=True here, else (False, why)."""
        try:
            params = self.make_params([(64,)], seed=0)
            with self.torch.no_grad():
                self.make_optimizer(name, "fused", params).step()
            self.sync()
        except (TypeError, RuntimeError, ValueError) as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return False, why
        return True, ""


def check_correctness(bench, name):
    """3 steps of the torch for-loop and of fuseopt; None when they agree, else the mismatch."""
    torch = bench.torch
    results = {}
    for impl in ("for-loop", "fuseopt"):
        params = bench.make_params(CHECK_SHAPES, seed=1)
        optimizer = bench.make_optimizer(name, impl, params)
        gen = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for _ in range(CHECK_STEPS):
                for p in params:
                    # A new gradient each step, the same for both implementations, with
                    # about 5% exact zeros (a parameter the batch did not touch).
                    g = torch.empty(p.shape).uniform_(-1.0, 1.0, generator=gen)
                    g[torch.rand(p.shape, generator=gen) < 0.05] = 0.0
                    p.grad.copy_(g.to(bench.device))
                optimizer.step()
        bench.sync()
        results[impl] = [p.detach().cpu() for p in params]
    for index, (want, got) in enumerate(zip(results["for-loop"], results["fuseopt"])):
        atol = ATOL_OF_MAX * want.abs().max().item()
        error = (got - want).abs()
        bound = atol + RTOL * want.abs()
        if not bool((error <= bound).all()):
            worst = int(((error - bound) / (want.abs() + atol / RTOL)).argmax())
            flat_want, flat_got = want.reshape(-1), got.reshape(-1)
            return (f"{name} on {bench.device}: after {CHECK_STEPS} steps tensor {index} "
                    f"(shape {tuple(want.shape)}) differs from torch.optim (foreach=False): "
                    f"{int((error > bound).sum())} of {want.numel()} elements beyond rtol {RTOL}"
                    f" (atol {atol:.3g}); worst at flat index {worst}: fuseopt "
                    f"{flat_got[worst].item():.9g}, torch {flat_want[worst].item():.9g}")
    return None


def time_config(bench, name, impls, tensors, numel, warmup, steps):
    """Times every implementation in impls on K = tensors x N = numel; impl -> figures.

    The implementations step in turns, one step each per round (the first to go rotates from
    round to round), each on its own copy of the tensors: a shared machine's drift then hits
    all of them alike. The speedup is the median over rounds of for-loop time / this time."""
    torch = bench.torch
    optimizers = {}
    for impl in impls:
        params = bench.make_params([(numel,)] * tensors, seed=3)
        optimizers[impl] = (bench.make_optimizer(name, impl, params), params)
    times = {impl: [] for impl in impls}
    with torch.no_grad():
        for impl in impls:
            for _ in range(warmup):
                optimizers[impl][0].step()
        bench.sync()
        for round_index in range(steps):
            shift = round_index % len(impls)
            for impl in impls[shift:] + impls[:shift]:
                start = time.perf_counter()
                optimizers[impl][0].step()
                bench.sync()
                times[impl].append(time.perf_counter() - start)
    del optimizers
    gc.collect()
    if bench.device == "cuda":
        torch.cuda.empty_cache()
    elements = tensors * numel
    figures = {}
    for impl in impls:
        step = statistics.median(times[impl])
        ns = step * 1e9 / elements
        figures[impl] = {
            "step_ms": step * 1e3,
            "min_step_ms": min(times[impl]) * 1e3,
            "max_step_ms": max(times[impl]) * 1e3,
            "ns_per_element": ns,
            "gb_per_s": OPTIMIZERS[name][3] / ns,
            "speedup": statistics.median(
                base / mine for base, mine in zip(times["for-loop"], times[impl])),
        }
    return figures


class OtherLoad:
    """How many cores other processes kept busy while this one ran (Linux /proc/stat).

    Timings on a shared machine are only as good as the quiet they were taken in; the script
    prints this beside them. None where /proc/stat cannot be read."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal: everything but idle and iowait.
        busy = sum(fields[:8]) - fields[3] - fields[4]
        own = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.perf_counter()

    def cores(self):
        end = self._sample()
        if self.start is None or end is None or end[2] <= self.start[2]:
            return None
        other = (end[0] - self.start[0]) - (end[1] - self.start[1])
        return max(0.0, other / (end[2] - self.start[2]))


def device_description(torch, device):
    if device == "cuda":
        return f"cuda: {torch.cuda.get_device_name(0)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {model}"


def format_table(summary, device_result):
    lines = [
        f"torch {summary['torch_version']}, fuseopt {summary['fuseopt_version']}, "
        f"{summary['threads']} threads, {device_result['description']}; median of "
        f"{summary['steps']} steps after {summary['warmup']} warm-up step(s)"
        + ("" if device_result["other_cores_busy"] is None else
           f"; other processes kept {device_result['other_cores_busy']:.2f} of "
           f"{os.cpu_count()} cores busy meanwhile"),
        "",
        "| optimizer | tensors x elements | implementation | step (ms) | ns/element | GB/s "
        "| speedup vs for-loop |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in device_result["rows"]:
        lines.append(
            f"| {row['optimizer']} | {row['tensors']} x {row['numel']} | {row['impl']} "
            f"| {row['step_ms']:.3g} | {row['ns_per_element']:.3g} | {row['gb_per_s']:.3g} "
            f"| {row['speedup']:.2f} |")
    if device_result["fused_missing"]:
        lines.append("")
    for name, why in device_result["fused_missing"].items():
        lines.append(f"- fused {name}: not run: {why}")
    return "\n".join(lines)


def main(argv):
    args = parse_args(argv)
    torch, fuseopt = import_modules()
    torch.set_num_threads(args.threads)
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    elif args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: torch sees no CUDA device")
    else:
        devices = [args.device]
    table_out = sys.stderr if args.json == "-" else sys.stdout

    summary = {
        "torch_version": torch.__version__,
        "fuseopt_version": getattr(fuseopt, "__version__", "unknown"),
        "python": sys.version.split()[0],
        "threads": args.threads,
        "warmup": args.warmup,
        "steps": args.steps,
        "rtol": RTOL,
        "bytes_per_element": {name: spec[3] for name, spec in OPTIMIZERS.items()},
        "devices": {},
    }
    for device in list(devices):
        bench = Bench(torch, fuseopt, device, args.threads)
        if device == "cuda" and args.device == "auto":
            why = bench.fuseopt_unavailable()
            if why:
                print(f"cuda: skipped: torch sees a GPU but fuseopt cannot step on it ({why})",
                      file=table_out, flush=True)
                devices.remove(device)
                continue
        # Correctness first, for every optimizer, before any figure is taken.
        for name in args.optimizers:
            try:
                mismatch = check_correctness(bench, name)
            except Exception as e:  # a fuseopt error here is a failure to report, not a crash
                fail(f"{name} on {device}: the correctness check raised {type(e).__name__}: {e}")
            if mismatch:
                fail(mismatch)
            print(f"correctness: {name} on {device}: fuseopt matches torch.optim (foreach=False) "
                  f"after {CHECK_STEPS} steps (rtol {RTOL})", file=table_out, flush=True)

        result = {"description": device_description(torch, device), "rows": [],
                  "fused_missing": {}}
        fused = {}
        for name in args.optimizers:
            fused[name], why = bench.fused_support(name)
            if not fused[name]:
                result["fused_missing"][name] = f"torch {torch.__version__} on {device}: {why}"
        load = OtherLoad()
        for name in args.optimizers:
            for tensors, numel in args.configs:
                impls = [impl for impl in IMPLS if impl != "fused" or fused[name]]
                figures = time_config(bench, name, impls, tensors, numel, args.warmup,
                                      args.steps)
                for impl in impls:
                    row = {"optimizer": name, "tensors": tensors, "numel": numel, "impl": impl,
                           **figures[impl]}
                    result["rows"].append(row)
                    print(f"{device} {name:8s} {tensors:6d} x {numel:<9d} {impl:9s} "
                          f"{row['step_ms']:10.3f} ms {row['ns_per_element']:8.3f} ns/element "
                          f"{row['gb_per_s']:7.2f} GB/s  x{row['speedup']:.2f}",
                          file=table_out, flush=True)
        result["other_cores_busy"] = load.cores()
        summary["devices"][device] = result

    print(file=table_out)
    for device in devices:
        print(format_table(summary, summary["devices"][device]), file=table_out)
        print(file=table_out)
    if args.json == "-":
        print(json.dumps(summary, indent=2))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
