"""Two processes (torch.multiprocessing, gloo on 127.0.0.1) train the MLP of torch_cases.py
with DistributedDataParallel and fuseopt.torch.Optimizer, and with
ZeroRedundancyOptimizer(optimizer_class=fuseopt.torch.Optimizer), each rank on its half of
every batch. After every step the parameters are bit-identical on both ranks, and after
the run they match one process that trains on whole batches.

Bound: DDP averages the two ranks' gradients (gloo's allreduce sums, then DDP divides by
2), where one process takes the mean over the whole batch; the gradients differ by float32
rounding, which 20 steps carry to at most the parity tolerance (rtol 1e-5, atol 1e-6 *
max|param|; torch_cases.py).
"""

import datetime
import faulthandler
import os
import socket
import sys
import tempfile
import time
import unittest

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel
except ImportError:
    print("skipped: needs torch with torch.distributed")
    sys.exit(77)

import fuseopt.torch

import torch_cases as tc

WORLD = 2
STEPS = 20
# A rank that hangs (a lost peer, a port taken between free_port() and the rendezvous) prints
# its stack and exits after this long, so that the test fails instead of waiting for CTest's
# timeout.
WORKER_TIMEOUT_S = 120
HYPERS = {"lr": 0.01, "betas": (0.9, 0.99), "weight_decay": 0.01}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_optimizer(kind, params):
    if kind == "zero":
        return ZeroRedundancyOptimizer(params, optimizer_class=fuseopt.torch.Optimizer,
                                       rule="adamw", backend="cpu", **HYPERS)
    return fuseopt.torch.Optimizer(params, "adamw", backend="cpu", **HYPERS)


def worker(rank, port, kind, out_dir):
    faulthandler.dump_traceback_later(WORKER_TIMEOUT_S, exit=True)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    try:
        torch.set_num_threads(1)
        model = DistributedDataParallel(tc.make_model())
        optimizer = make_optimizer(kind, model.parameters())
        for step, (x, y) in enumerate(tc.make_batches(STEPS), 1):
            half = x.shape[0] // WORLD
            mine = slice(rank * half, (rank + 1) * half)
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(x[mine]), y[mine]).backward()
            optimizer.step()
            # Every rank must hold the same parameters after every step.
            flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
            gathered = [torch.empty_like(flat) for _ in range(WORLD)]
            dist.all_gather(gathered, flat)
            if not all(torch.equal(g, gathered[0]) for g in gathered):
                raise AssertionError(f"{kind}: ranks differ after step {step}")
        if kind == "zero":
            optimizer.consolidate_state_dict(to=0)
            if rank == 0:
                state = optimizer.state_dict()
                if len(state["state"]) != len(list(model.parameters())):
                    raise AssertionError("ZeRO's consolidated state misses parameters")
        torch.save(model.module.state_dict(), os.path.join(out_dir, f"{kind}{rank}.pt"))
    finally:
        dist.destroy_process_group()
        faulthandler.cancel_dump_traceback_later()


class DistributedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not dist.is_available() or not dist.is_gloo_available():
            raise unittest.SkipTest("torch.distributed with gloo is not available")
        model = tc.make_model()
        optimizer = make_optimizer("plain", model.parameters())
        for x, y in tc.make_batches(STEPS):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
        cls.single = model

    @staticmethod
    def run_workers(kind, out_dir):
        """True when both ranks finished; False when they did not within the limit (a rank
        stuck before its own watchdog is armed, e.g. while the spawned interpreter starts),
        after killing them so that none keeps CTest's output pipe open."""
        context = mp.spawn(worker, args=(free_port(), kind, out_dir), nprocs=WORLD,
                           join=False)
        deadline = time.monotonic() + WORKER_TIMEOUT_S + 30
        while time.monotonic() < deadline:
            if context.join(timeout=1):  # raises when a rank failed
                return True
        for process in context.processes:
            process.kill()
            process.join()
        return False

    def check(self, kind):
        with tempfile.TemporaryDirectory() as out_dir:
            # A rank that never starts is the machine's, not fuseopt's: one more try, on a new
            # port, before failing.
            if not self.run_workers(kind, out_dir):
                print(f"{kind}: the ranks did not finish in time; trying again", flush=True)
                self.assertTrue(self.run_workers(kind, out_dir),
                                f"{kind}: the ranks did not finish twice")
            states = [torch.load(os.path.join(out_dir, f"{kind}{rank}.pt"))
                      for rank in range(WORLD)]
        for name, value in states[0].items():
            self.assertTrue(torch.equal(value, states[1][name]), f"{kind}: {name}")
        model = tc.make_model()
        model.load_state_dict(states[0])
        error = tc.worst_error(model, self.single)
        self.assertLessEqual(error, tc.RTOL, f"{kind} against one process: {error:.2e}")

    def test_ddp(self):
        self.check("ddp")

    def test_zero_redundancy_optimizer(self):
        self.check("zero")


if __name__ == "__main__":
    unittest.main()
