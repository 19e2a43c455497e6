"""bf16/f16 parameters and states, master weights, stochastic rounding and the GradScaler
contract of fuseopt.torch.Optimizer, and the bf16/f16 memory the low-level Optimizer takes
(docs/python.md, docs/mixed-precision.md).

Every torch test runs with the interp backend (the reference interpreter, which stores bf16
and f16 today) and with the cpu backend where it stores them: otherwise the cpu variant is
skipped with the reason the cpu backend gives."""

import sys
import unittest

try:
    import numpy as np
    import torch
except ImportError:
    print("skipped: needs torch and numpy")
    sys.exit(77)

import fuseopt
import fuseopt.torch

TORCH_2 = int(torch.__version__.split(".")[0]) >= 2


def _cpu_two_byte_reason():
    """Why the cpu backend cannot step bf16 memory here ('' when it can)."""
    try:
        kernel = fuseopt.compile("adamw", backend="cpu", tuned=False,
                                 storage={"param": "bf16 stochastic", "grad": "bf16",
                                          "exp_avg": "bf16"},
                                 options={"master_weights": True}, loss_scaling=True)
        opt = fuseopt.Optimizer(kernel, {}, 1)
        opt.add_tensor(torch.ones(8, dtype=torch.bfloat16), torch.ones(8, dtype=torch.bfloat16))
        opt.step()
    except fuseopt.UserError as error:
        return str(error).splitlines()[0]
    return ""


CPU_REASON = _cpu_two_byte_reason()


def ordered_bits(t):
    """bf16/f16 values as integers that count ulps: adjacent values differ by 1."""
    bits = t.contiguous().view(torch.int16).to(torch.int32)
    return torch.where(bits < 0, -(bits & 0x7FFF), bits)


def bits_equal(a, b):
    return a.dtype == b.dtype and torch.equal(a.reshape(-1).view(torch.int8),
                                              b.reshape(-1).view(torch.int8))


class BackendMixin:
    """Runs each test with self.backend; the cpu subclass skips where cpu cannot store bf16."""
    backend = "interp"

    def setUp(self):
        if self.backend == "cpu" and CPU_REASON:
            self.skipTest("the cpu backend does not step bf16 memory here: " + CPU_REASON)

    def make(self, params, rule="adamw", **kwargs):
        return fuseopt.torch.Optimizer(params, rule, backend=self.backend, threads=1,
                                       **kwargs)


def bf16_params(seed, *sizes):
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(n, generator=generator).to(torch.bfloat16))
            for n in sizes]


def bf16_grads(generator, params, scale=1.0):
    for p in params:
        p.grad = (torch.randn(p.shape, generator=generator) * scale).to(p.dtype)


class LowLevelMemoryTest(unittest.TestCase):
    """fuseopt.Optimizer takes memory of the kernel's storage types."""

    def test_bf16_torch_tensors_and_uint16_bits(self):
        kernel = fuseopt.compile("adamw", backend="interp",
                                 storage={"param": "bf16", "grad": "bf16"})
        self.assertEqual(kernel.storage["param"], "bf16")
        self.assertEqual(kernel.storage["exp_avg"], "f32")
        opt = fuseopt.Optimizer(kernel, {"lr": 0.01}, 1)
        self.assertEqual(opt.storage("param"), "bf16")
        self.assertEqual(opt.storage("grad"), "bf16")
        self.assertEqual(opt.storage("exp_avg_sq"), "f32")
        param = torch.randn(100).to(torch.bfloat16)
        grad = torch.randn(100).to(torch.bfloat16)
        # the same values as NumPy uint16 bits
        param_bits = param.view(torch.int16).numpy().view(np.uint16).copy()
        grad_bits = grad.view(torch.int16).numpy().view(np.uint16).copy()
        opt.add_tensor(param, grad)
        opt.add_tensor(param_bits, grad_bits)
        self.assertTrue(opt.step())
        np.testing.assert_array_equal(param.view(torch.int16).numpy().view(np.uint16),
                                      param_bits)
        np.testing.assert_array_equal(opt.data(1, "param"), param_bits)
        self.assertEqual(opt.data(0, "param").dtype, np.uint16)
        self.assertEqual(opt.data(0, "exp_avg").dtype, np.float32)
        np.testing.assert_array_equal(opt.read_param(0), param.float().numpy())
        with self.assertRaises(fuseopt.UserError):
            opt.param(0)  # the float32 view is for f32 buffers

    def test_f16_numpy_arrays(self):
        kernel = fuseopt.compile("sgd", backend="interp",
                                 storage={"param": "f16", "grad": "f16"})
        opt = fuseopt.Optimizer(kernel, {"lr": 0.5}, 1)
        param = np.ones(10, np.float16)
        grad = np.full(10, 0.25, np.float16)
        opt.add_tensor(param, grad)
        opt.step()
        np.testing.assert_array_equal(param, np.full(10, 0.875, np.float16))
        self.assertEqual(opt.data(0, "param").dtype, np.float16)

    def test_a_dtype_other_than_the_storage_is_refused(self):
        bf16 = fuseopt.Optimizer(fuseopt.compile("sgd", backend="interp",
                                                 storage={"param": "bf16", "grad": "bf16"}))
        with self.assertRaisesRegex(fuseopt.UserError, "param holds float32.*bf16"):
            bf16.add_tensor(np.zeros(4, np.float32), np.zeros(4, np.uint16))
        with self.assertRaisesRegex(fuseopt.UserError, "grad holds float16"):
            bf16.add_tensor(np.zeros(4, np.uint16), np.zeros(4, np.float16))
        f32 = fuseopt.Optimizer(fuseopt.compile("sgd", backend="interp"))
        with self.assertRaisesRegex(fuseopt.UserError, "param holds bfloat16.*f32"):
            f32.add_tensor(torch.zeros(4, dtype=torch.bfloat16), torch.zeros(4))
        with self.assertRaisesRegex(fuseopt.UserError, "float32, float16 or bfloat16"):
            f32.add_tensor(np.zeros(4, np.float64), np.zeros(4, np.float32))


class Bf16AdamWTest(BackendMixin, unittest.TestCase):
    def test_each_step_is_torch_adamw_in_f32_rounded_to_bf16(self):
        """Each step from the same bf16 parameter and f32 states: fuseopt computes in f32 from
        the widened bf16 values and rounds the parameter to nearest even once, as torch's
        AdamW on the widened values followed by .to(torch.bfloat16). The f32 results differ
        by a few f32 ulps at most (torch 1.13 writes lerp as mul/add), so the bf16 results
        are equal, or 1 bf16 ulp apart where the two straddle a rounding boundary."""
        params = bf16_params(1, 300, 77)
        opt = self.make(params, lr=0.01, weight_decay=0.1)
        generator = torch.Generator().manual_seed(2)
        differing = 0
        for step in range(1, 11):
            bf16_grads(generator, params)
            before = [(p.detach().clone(), dict(opt.state.get(p, {}))) for p in params]
            before = [(value, {k: v.clone() for k, v in state.items()}) for value, state in before]
            opt.step()
            for p, (value, state) in zip(params, before):
                w = torch.nn.Parameter(value.float())
                w.grad = p.grad.float()
                reference = torch.optim.AdamW([w], lr=0.01, weight_decay=0.1, foreach=False)
                if state:
                    reference.state[w] = {"step": torch.tensor(float(step - 1)),
                                          "exp_avg": state["exp_avg"].clone(),
                                          "exp_avg_sq": state["exp_avg_sq"].clone()}
                reference.step()
                expected = w.detach().to(torch.bfloat16)
                gap = (ordered_bits(p.detach()) - ordered_bits(expected)).abs()
                self.assertLessEqual(int(gap.max()), 1, f"step {step}")
                differing += int((gap != 0).sum())
                ref_state = reference.state[w]
                for name in ("exp_avg", "exp_avg_sq"):
                    torch.testing.assert_close(opt.state[p][name], ref_state[name],
                                               rtol=1e-5, atol=1e-7)
        # straddling a boundary is rare: a handful of 3770 roundings
        self.assertLess(differing, 40)
        self.assertEqual(opt.state[params[0]]["exp_avg"].dtype, torch.float32)

    def test_bf16_states_share_memory_and_are_bf16(self):
        params = bf16_params(3, 50)
        opt = self.make(params, state_dtype=torch.bfloat16)
        bf16_grads(torch.Generator().manual_seed(4), params)
        opt.step()
        exp_avg = opt.state[params[0]]["exp_avg"]
        self.assertEqual(exp_avg.dtype, torch.bfloat16)
        self.assertEqual(exp_avg.shape, params[0].shape)
        kernel = opt._groups[0].parts[0].kernel
        self.assertEqual(kernel.storage["exp_avg"], "bf16")
        self.assertEqual(kernel.storage["exp_avg_sq"], "bf16")
        # the tensor is the C++ state's memory: a write shows in the optimizer's copy
        exp_avg[0] = 3.0
        core = opt._groups[0].parts[0].core
        self.assertEqual(core.read_state(0, "exp_avg")[0], 3.0)

    def test_a_group_mixing_dtypes_is_split_per_dtype(self):
        generator = torch.Generator().manual_seed(5)
        mixed = [torch.nn.Parameter(torch.randn(40, generator=generator).to(dtype))
                 for dtype in (torch.bfloat16, torch.float32, torch.float16, torch.bfloat16)]
        alone = [torch.nn.Parameter(p.detach().clone()) for p in mixed]
        opt = self.make(mixed, lr=0.01)
        self.assertEqual([part.dtype for part in opt._groups[0].parts],
                         [torch.bfloat16, torch.float32, torch.float16])
        # the same parameters, each dtype in its own optimizer
        singles = [self.make([p], lr=0.01) for p in alone]
        for _ in range(3):
            for p, q in zip(mixed, alone):
                p.grad = torch.randn(p.shape, generator=generator).to(p.dtype)
                q.grad = p.grad.clone()
            opt.step()
            for single in singles:
                single.step()
        for p, q, single in zip(mixed, alone, singles):
            self.assertTrue(bits_equal(p.detach(), q.detach()))
            self.assertTrue(bits_equal(opt.state[p]["exp_avg"], single.state[q]["exp_avg"]))

    def test_mixed_dtypes_with_clipping_is_an_error(self):
        params = [torch.nn.Parameter(torch.zeros(4)), *bf16_params(6, 4)]
        with self.assertRaisesRegex(fuseopt.UserError, "mixes dtypes"):
            self.make(params, max_grad_norm=1.0)

    def test_a_parameter_whose_dtype_changed_is_an_error(self):
        params = bf16_params(7, 8)
        opt = self.make(params)
        params[0].data = params[0].data.float()
        params[0].grad = torch.ones(8)
        with self.assertRaisesRegex(fuseopt.UserError, "no longer a contiguous torch.bfloat16"):
            opt.step()


class MasterWeightsTest(BackendMixin, unittest.TestCase):
    def test_master_follows_f32_adamw_and_the_param_is_it_rounded(self):
        params = bf16_params(8, 500, 33)
        reference_params = [torch.nn.Parameter(p.detach().float()) for p in params]
        opt = self.make(params, lr=1e-3, weight_decay=0.05, master_weights=True)
        reference = torch.optim.AdamW(reference_params, lr=1e-3, weight_decay=0.05,
                                      foreach=False)
        generator = torch.Generator().manual_seed(9)
        for step in range(20):
            bf16_grads(generator, params)
            for p, r in zip(params, reference_params):
                r.grad = p.grad.float()
            opt.step()
            reference.step()
            for p, r in zip(params, reference_params):
                master = opt.state[p]["master"]
                self.assertEqual(master.dtype, torch.float32)
                torch.testing.assert_close(master, r.detach(), rtol=1e-5, atol=1e-6)
                self.assertTrue(bits_equal(p.detach(), master.to(torch.bfloat16)),
                                f"step {step}")
        # the master moved by far less than bf16's spacing per step and kept it
        self.assertFalse(torch.equal(opt.state[params[0]]["master"],
                                     params[0].detach().float()))

    def test_state_dtype_leaves_the_master_in_f32(self):
        params = bf16_params(10, 16)
        opt = self.make(params, master_weights=True, state_dtype=torch.bfloat16)
        storage = opt._groups[0].parts[0].kernel.storage
        self.assertEqual((storage["exp_avg"], storage["master"]), ("bf16", "f32"))

    def test_rules_without_the_option_say_which_have_it(self):
        with self.assertRaisesRegex(fuseopt.UserError, "no option master_weights.*adamw"):
            self.make(bf16_params(11, 4), rule="adam", master_weights=True)


class StochasticRoundingTest(BackendMixin, unittest.TestCase):
    def run_steps(self, seed, steps=4):
        params = bf16_params(12, 2048)
        opt = self.make(params, rule="sgd", lr=1e-3, stochastic_rounding=True,
                        rounding_seed=seed)
        generator = torch.Generator().manual_seed(13)
        for _ in range(steps):
            bf16_grads(generator, params)
            opt.step()
        return params[0].detach().clone(), opt

    def test_the_same_seed_gives_the_same_bits_and_another_seed_others(self):
        first, opt = self.run_steps(5)
        self.assertEqual(opt._groups[0].parts[0].kernel.storage["param"], "bf16 stochastic")
        again, _ = self.run_steps(5)
        other, _ = self.run_steps(6)
        self.assertTrue(bits_equal(first, again))
        self.assertFalse(bits_equal(first, other))
        # both are roundings of the same f32 values: a bf16 ulp apart at most per step
        self.assertLessEqual(int((ordered_bits(first) - ordered_bits(other)).abs().max()), 4)

    def test_the_seed_is_a_group_key(self):
        params = bf16_params(14, 8)
        opt = self.make(params, rule="sgd", stochastic_rounding=True)
        self.assertEqual(opt.param_groups[0]["rounding_seed"], 0.0)
        opt.param_groups[0]["rounding_seed"] = 77
        bf16_grads(torch.Generator().manual_seed(1), params)
        opt.step()
        self.assertEqual(opt._groups[0].parts[0].core.hyper("rounding_seed"), 77.0)


def snapshot(opt):
    """Every parameter and state of every group, bitwise, and the step counts."""
    out = []
    for group in opt.param_groups:
        for p in group["params"]:
            out.append(p.detach().clone())
    for key, state in opt.state_dict()["state"].items():
        for name, value in sorted(state.items()):
            out.append(value.clone() if isinstance(value, torch.Tensor) else value)
    return out


class LossScalingTest(BackendMixin, unittest.TestCase):
    SCALE = 2.0 ** 10

    def two_groups(self, **kwargs):
        generator = torch.Generator().manual_seed(20)
        f32 = [torch.nn.Parameter(torch.randn(64, generator=generator)) for _ in range(2)]
        bf16 = bf16_params(21, 48, 16)
        opt = self.make([{"params": f32}, {"params": bf16, "lr": 0.02}], lr=0.01, **kwargs)
        return opt, f32 + bf16, generator

    def scaled_grads(self, params, generator):
        """Gradients scaled by a power of two (exact), and their unscaled values."""
        unscaled = []
        for p in params:
            g = torch.randn(p.shape, generator=generator).to(p.dtype)
            unscaled.append(g)
            p.grad = g * self.SCALE
        return unscaled

    def assert_same(self, before, after):
        self.assertEqual(len(before), len(after))
        for a, b in zip(before, after):
            if isinstance(a, torch.Tensor):
                self.assertTrue(bits_equal(a, b))
            else:
                self.assertEqual(a, b)

    def test_an_inf_in_one_group_skips_every_group(self):
        for how in ("precheck", "overflow", "found_inf", "attributes"):
            with self.subTest(how=how):
                opt, params, generator = self.two_groups()
                self.scaled_grads(params, generator)
                opt.step(grad_scale=self.SCALE)  # a first step: there are states to keep
                self.scaled_grads(params, generator)
                params[-1].grad[3] = float("inf")  # group 1's last (bf16) parameter
                before = snapshot(opt)
                found = torch.zeros(1)
                if how == "precheck":
                    # no found_inf: fuseopt checks every group before any kernel runs
                    opt.step(grad_scale=torch.tensor([self.SCALE]))
                elif how == "overflow":
                    # finite scaled gradients (found_inf 0) whose unscaling by 1 / 0.5
                    # overflows: the pre-check runs and reports it back
                    params[-1].grad[3] = 3e38
                    opt.step(grad_scale=0.5, found_inf=found)
                    self.assertEqual(float(found), 1.0)
                elif how == "found_inf":
                    opt.step(grad_scale=self.SCALE, found_inf=torch.ones(1))
                else:  # torch >= 2's GradScaler sets these around step()
                    opt.grad_scale = torch.tensor([self.SCALE])
                    opt.found_inf = torch.ones(1)
                    opt.step()
                    del opt.grad_scale, opt.found_inf
                self.assertTrue(opt.last_step_skipped)
                self.assert_same(before, snapshot(opt))
                self.assertEqual(opt.state_dict()["state"][0]["step"].item(), 1.0)

    def test_found_inf_zero_with_an_inf_in_a_later_group_is_an_error(self):
        opt, params, generator = self.two_groups()
        self.scaled_grads(params, generator)
        params[-1].grad[0] = float("inf")
        with self.assertRaisesRegex(fuseopt.UserError, "found_inf was 0"):
            opt.step(grad_scale=self.SCALE, found_inf=torch.zeros(1))

    def test_a_nan_in_a_group_of_one_dtype_is_the_kernels_skip(self):
        params = bf16_params(22, 32)
        opt = self.make(params, loss_scaling=True)
        params[0].grad = torch.full((32,), float("nan"), dtype=torch.bfloat16)
        found = torch.zeros(1)
        opt.step(grad_scale=4.0, found_inf=None)
        self.assertTrue(opt.last_step_skipped)
        self.assertNotIn(params[0], opt.state)
        opt.step(grad_scale=4.0, found_inf=found)  # found_inf 0: the kernel still checks
        self.assertEqual(float(found), 1.0)

    def test_a_finite_step_is_torch_adamw_after_unscaling(self):
        opt, params, generator = self.two_groups()
        f32_params = [torch.nn.Parameter(p.detach().float()) for p in params]
        reference = torch.optim.AdamW([{"params": f32_params[:2]},
                                       {"params": f32_params[2:], "lr": 0.02}], lr=0.01,
                                      foreach=False)
        for _ in range(5):
            unscaled = self.scaled_grads(params, generator)
            # the scale changes between steps without recompiling
            opt.step(grad_scale=torch.tensor([self.SCALE]), found_inf=torch.zeros(1))
            self.assertFalse(opt.last_step_skipped)
            for p, r, g in zip(params, f32_params, unscaled):
                r.grad = g.float()
            reference.step()
            for p, r in zip(params[:2], f32_params[:2]):
                torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-5, atol=1e-6)
            for p, r in zip(params[2:], f32_params[2:]):
                # bf16 parameters: each step rounds, the reference does not
                torch.testing.assert_close(p.detach().float(), r.detach(), rtol=2e-2,
                                           atol=2e-2)
                r.data = p.detach().float()  # follow the bf16 values
        self.assertTrue(opt._groups[0].loss_scaling)

    @unittest.skipIf(TORCH_2, "torch >= 2 GradScaler sets attributes instead (see the "
                              "attributes case above and tools/check-pypi-torch.sh)")
    def test_torch_1_13_grad_scaler_keyword(self):
        """torch 1.13's GradScaler.step(optimizer) calls step(grad_scaler=self). Its CPU use
        is disabled in 1.13 and its inf check is CUDA-only, so the scaler's CPU check is
        supplied here (as 1.13's _unscale_grads_ computes it); step() is the real one."""

        import collections
        import torch.cuda.amp.grad_scaler as grad_scaler_module

        class CpuScaler(torch.cuda.amp.GradScaler):
            def __init__(self):
                # What 1.13's __init__ sets when enabled (it disables itself without CUDA).
                super().__init__(enabled=False)
                self._enabled = True
                self._init_scale, self._growth_factor, self._backoff_factor = 2.0 ** 10, 2.0, 0.5
                self._growth_interval, self._init_growth_tracker = 2000, 0
                self._scale = self._growth_tracker = None
                self._per_optimizer_states = collections.defaultdict(
                    grad_scaler_module._refresh_per_optimizer_state)
                self._lazy_init_scale_growth_tracker(torch.device("cpu"))

            def _unscale_grads_(self, optimizer, inv_scale, found_inf, allow_fp16):
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.grad.mul_(inv_scale.to(p.grad.dtype))
                            if not bool(torch.isfinite(p.grad).all()):
                                found_inf.fill_(1.0)
                return {"cpu": found_inf}

        opt, params, generator = self.two_groups()
        scaler = CpuScaler()
        self.scaled_grads(params, generator)
        scaler.step(opt)
        self.assertFalse(opt.last_step_skipped)
        self.assertEqual(opt._groups[1].parts[0].core.hyper("grad_scale"), 2.0 ** 10)
        self.assertEqual(float(scaler._found_inf_per_device(opt)["cpu"]), 0.0)
        self.scaled_grads(params, generator)
        params[0].grad[0] = float("nan")
        before = snapshot(opt)
        scaler._per_optimizer_states.clear()
        scaler.step(opt)
        self.assertTrue(opt.last_step_skipped)
        self.assertEqual(float(scaler._found_inf_per_device(opt)["cpu"]), 1.0)
        self.assert_same(before, snapshot(opt))


class GradScalerTest(unittest.TestCase):
    """torch >= 2.3's CPU GradScaler driving fuseopt.torch through the fused-optimizer
    contract, float32 parameters (tools/check-pypi-torch.sh runs it with torch from PyPI)."""

    def setUp(self):
        if not (TORCH_2 and hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler")):
            self.skipTest("needs torch.amp.GradScaler('cpu') (torch >= 2.3); this is torch "
                          + torch.__version__)

    def check_grad_scaler(self):
        """The real scaler: scale the loss, step, update; an inf skips every group and
        lowers the scale, as with torch.optim.AdamW under the same scaler."""
        generator = torch.Generator().manual_seed(30)
        base = [torch.randn(32, generator=generator) for _ in range(3)]
        ours = [torch.nn.Parameter(b.clone()) for b in base]
        theirs = [torch.nn.Parameter(b.clone()) for b in base]
        opt = fuseopt.torch.Optimizer([{"params": ours[:1]}, {"params": ours[1:]}], "adamw",
                                      backend=self.backend, threads=1, lr=0.01)
        reference = torch.optim.AdamW([{"params": theirs[:1]}, {"params": theirs[1:]}],
                                      lr=0.01, foreach=False)
        scalers = [torch.amp.GradScaler("cpu", init_scale=2.0 ** 8),
                   torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)]
        for step in range(6):
            x = torch.randn(32, generator=generator)
            for params, optimizer, scaler in ((ours, opt, scalers[0]),
                                              (theirs, reference, scalers[1])):
                optimizer.zero_grad()
                loss = sum((p * x).sum() ** 2 for p in params)
                if step == 3:
                    loss = loss * float("inf")
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            self.assertEqual(opt.last_step_skipped, step == 3)
            self.assertEqual(scalers[0].get_scale(), scalers[1].get_scale())
            for p, r in zip(ours, theirs):
                torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-5, atol=1e-6)
        self.assertLess(scalers[0].get_scale(), 2.0 ** 8)

    def test_with_the_interp_backend(self):
        self.backend = "interp"
        self.check_grad_scaler()

    def test_with_the_cpu_backend(self):
        self.backend = "cpu"
        self.check_grad_scaler()


class StateDictTest(BackendMixin, unittest.TestCase):
    def test_round_trip_is_bit_exact(self):
        for kwargs in ({}, {"state_dtype": torch.bfloat16},
                       {"master_weights": True, "state_dtype": torch.bfloat16},
                       {"stochastic_rounding": True, "rounding_seed": 3}):
            with self.subTest(**{k: str(v) for k, v in kwargs.items()}):
                params = bf16_params(40, 64) + [torch.nn.Parameter(torch.randn(8))]
                opt = self.make(params, lr=0.01, **kwargs)
                generator = torch.Generator().manual_seed(41)
                for _ in range(3):
                    bf16_grads(generator, params)
                    opt.step()
                saved = opt.state_dict()
                copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
                loaded = self.make(copies, lr=0.01, **kwargs)
                loaded.load_state_dict(saved)
                for p, q in zip(params, copies):
                    for name, value in opt.state[p].items():
                        other = loaded.state[q][name]
                        self.assertTrue(bits_equal(value, other), name)
                for _ in range(2):
                    bf16_grads(generator, params)
                    for p, q in zip(params, copies):
                        q.grad = p.grad.clone()
                    opt.step()
                    loaded.step()
                for p, q in zip(params, copies):
                    self.assertTrue(bits_equal(p.detach(), q.detach()))


class CpuBf16AdamWTest(Bf16AdamWTest):
    backend = "cpu"


class CpuMasterWeightsTest(MasterWeightsTest):
    backend = "cpu"


class CpuStochasticRoundingTest(StochasticRoundingTest):
    backend = "cpu"


class CpuLossScalingTest(LossScalingTest):
    backend = "cpu"


class CpuStateDictTest(StateDictTest):
    backend = "cpu"


if __name__ == "__main__":
    unittest.main()
