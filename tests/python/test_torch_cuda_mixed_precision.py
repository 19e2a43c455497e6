"""Mixed precision of fuseopt.torch.Optimizer on a GPU (label gpu): bf16 parameters with
master weights, stochastic rounding and torch.cuda.amp.GradScaler, each checked bit for bit
against the same optimizer run by the reference interpreter on the CPU (backend "interp"),
which every backend must match (docs/mixed-precision.md). Without torch, a GPU torch can use
or fuseopt's cuda backend, run as a script (as CTest does) it exits 77 (skipped); imported by
unittest discovery (tools/check-pypi-torch.sh) the module is skipped."""

import sys
import unittest

try:
    import torch
except ImportError:
    torch = None

import fuseopt
import fuseopt.torch


def _skip_reason():
    if torch is None:
        return "needs torch"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    if fuseopt.cuda_unavailable_reason():
        return "fuseopt's cuda backend cannot run here: " + fuseopt.cuda_unavailable_reason()
    return ""


SKIP_REASON = _skip_reason()
if SKIP_REASON:
    if __name__ == "__main__":
        print("skipped: " + SKIP_REASON)
        sys.exit(77)
    raise unittest.SkipTest(SKIP_REASON)

DEVICE = torch.device("cuda", fuseopt.cuda_device_ordinal())


def bits(t):
    """A tensor's bytes on the CPU, for bitwise comparison of any dtype."""
    return t.detach().contiguous().cpu().reshape(-1).view(torch.int8)


def make_params(seed, dtypes_and_sizes):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=generator).to(dtype) for dtype, n in dtypes_and_sizes]


class Pair:
    """The same parameters stepped on the GPU (cuda backend) and on the CPU (interp)."""

    def __init__(self, values, groups, **kwargs):
        self.gpu = [torch.nn.Parameter(v.clone().to(DEVICE)) for v in values]
        self.cpu = [torch.nn.Parameter(v.clone()) for v in values]
        self.opt_gpu = fuseopt.torch.Optimizer(
            [{"params": [self.gpu[i] for i in g]} for g in groups], "adamw", **kwargs)
        self.opt_cpu = fuseopt.torch.Optimizer(
            [{"params": [self.cpu[i] for i in g]} for g in groups], "adamw", backend="interp",
            threads=1, **kwargs)

    def set_grads(self, generator, scale=1.0, poison=None):
        for i, (g, c) in enumerate(zip(self.gpu, self.cpu)):
            grad = (torch.randn(c.shape, generator=generator) * scale).to(c.dtype)
            if poison == i:
                grad[len(grad) // 2] = float("inf")
            c.grad = grad.clone()
            g.grad = grad.clone().to(DEVICE)

    def scaled_backward(self, scaler, generator, poison=None):
        """loss = sum of p * x, scaled by the scaler and run backward on the GPU; the CPU
        copies get the very gradients the GPU saw."""
        loss = 0
        for i, g in enumerate(self.gpu):
            x = torch.randn(g.shape, generator=generator)
            if poison == i:
                x[len(x) // 2] = float("inf")
            loss = loss + (g.float() * x.to(DEVICE)).sum()
        for g in self.gpu:
            g.grad = None
        scaler.scale(loss).backward()
        for g, c in zip(self.gpu, self.cpu):
            c.grad = g.grad.detach().cpu().clone()

    def assert_same(self, test):
        for g, c in zip(self.gpu, self.cpu):
            test.assertTrue(torch.equal(bits(g), bits(c)), "parameters differ")
            for name, value in self.opt_cpu.state[c].items():
                theirs = self.opt_gpu.state[g][name]
                if torch.is_tensor(value):
                    test.assertTrue(torch.equal(bits(theirs), bits(value)), f"state {name}")
                else:
                    test.assertEqual(theirs, value, f"state {name}")


class CudaMixedPrecisionTest(unittest.TestCase):
    SIZES = [(torch.bfloat16, 1000003), (torch.bfloat16, 7), (torch.float32, 4097)]

    def test_bf16_master_weights_give_the_interpreters_bits(self):
        pair = Pair(make_params(1, self.SIZES), [[0, 1, 2]], lr=1e-3, master_weights=True)
        generator = torch.Generator().manual_seed(2)
        for _ in range(4):
            pair.set_grads(generator)
            pair.opt_gpu.step()
            pair.opt_cpu.step()
            torch.cuda.synchronize()
            pair.assert_same(self)
        master = pair.opt_gpu.state[pair.gpu[0]]["master"]
        self.assertEqual(master.dtype, torch.float32)
        self.assertTrue(torch.equal(bits(master.to(torch.bfloat16)), bits(pair.gpu[0])))

    def test_stochastic_rounding_gives_the_interpreters_bits(self):
        pair = Pair(make_params(3, self.SIZES), [[0, 1], [2]], lr=1e-4,
                    stochastic_rounding=True, state_dtype=torch.bfloat16, rounding_seed=99)
        generator = torch.Generator().manual_seed(4)
        for _ in range(3):
            pair.set_grads(generator)
            pair.opt_gpu.step()
            pair.opt_cpu.step()
            torch.cuda.synchronize()
            pair.assert_same(self)

    def test_grad_scaler_skips_every_group_and_matches_the_interpreter(self):
        """The real torch.cuda.amp.GradScaler drives the fused-optimizer contract: the kernel
        unscales, an inf in one group skips both groups and the scaler backs off."""
        pair = Pair(make_params(5, self.SIZES), [[0, 1], [2]], lr=1e-2)
        scaler = torch.cuda.amp.GradScaler(init_scale=2.0 ** 10)
        generator = torch.Generator().manual_seed(6)
        for step in range(5):
            poison = 2 if step == 2 else None  # an inf in the f32 group only
            scale = scaler.get_scale()
            pair.scaled_backward(scaler, generator, poison=poison)
            before = [bits(p).clone() for p in pair.gpu]
            scaler.step(pair.opt_gpu)
            scaler.update()
            if poison is not None:
                self.assertTrue(pair.opt_gpu.last_step_skipped)
                self.assertEqual(scaler.get_scale(), scale * 0.5)
                for b, p in zip(before, pair.gpu):
                    self.assertTrue(torch.equal(b, bits(p)), "a skipped step changed a param")
                continue
            self.assertFalse(pair.opt_gpu.last_step_skipped)
            pair.opt_cpu.step(grad_scale=scale, found_inf=0.0)
            torch.cuda.synchronize()
            pair.assert_same(self)

    def test_loss_scaled_steps_decided_on_the_gpu(self):
        """GradScaler's tensors on the GPU: the kernels read found_inf and the scale there and
        decide the skip themselves (no host round trip), set found_inf on a skip, and give the
        interpreter's bits; with two param groups and two dtypes each C++ optimizer checks
        its gradients first, so that an inf in one group skips them all."""
        layouts = [
            ([(torch.float32, 1000003), (torch.float32, 7), (torch.float32, 4097)], [[0, 1, 2]],
             {"max_grad_norm": 0.5}),
            ([(torch.float32, 65537), (torch.bfloat16, 33), (torch.float32, 4097)], [[0, 1], [2]],
             {}),
        ]
        for sizes, groups, extra in layouts:
            with self.subTest(groups=groups):
                pair = Pair(make_params(7, sizes), groups, lr=1e-2, **extra)
                generator = torch.Generator().manual_seed(8)
                scale = torch.full((), 1024.0, device=DEVICE)
                for step in range(5):
                    poison = 2 if step == 2 else None  # the last group only
                    pair.set_grads(generator, scale=1024.0, poison=poison)
                    found_inf = torch.full((), 1.0 if step == 3 else 0.0, device=DEVICE)
                    before = [bits(p).clone() for p in pair.gpu]
                    pair.opt_gpu.step(grad_scale=scale, found_inf=found_inf)
                    for runtime in pair.opt_gpu._groups:
                        for part in runtime.parts:
                            self.assertTrue(part.core.decides_on_device)
                    skipped = step in (2, 3)
                    self.assertEqual(pair.opt_gpu.last_step_skipped, skipped)
                    self.assertEqual(float(found_inf), 1.0 if skipped else 0.0)
                    if skipped:
                        for b, p in zip(before, pair.gpu):
                            self.assertTrue(torch.equal(b, bits(p)), "a skipped step changed a param")
                        continue
                    pair.opt_cpu.step(grad_scale=1024.0, found_inf=0.0)
                    torch.cuda.synchronize()
                    pair.assert_same(self)
                    if extra:
                        self.assertEqual(pair.opt_gpu.last_grad_norm(), pair.opt_cpu.last_grad_norm())

if __name__ == "__main__":
    unittest.main(verbosity=2)
