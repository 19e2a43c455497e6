"""Loss scaling, global-norm clipping and storage choices from Python: fuseopt.torch's
max_grad_norm against torch.nn.utils.clip_grad_norm_ + torch.optim (CPU), and the
low-level optimizer's loss scaling (unscale in the step, skip on inf) against torch.optim on
unscaled gradients (docs/mixed-precision.md)."""

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

import torch_cases as tc


class ClippingTest(unittest.TestCase):
    def run_pair(self, rule, torch_class, max_norm, steps=30, **hypers):
        model, reference_model = tc.make_model(), tc.make_model()
        opt = fuseopt.torch.Optimizer(model.parameters(), rule, max_grad_norm=max_norm,
                                      **hypers)
        reference = torch_class(reference_model.parameters(), foreach=False, **hypers)
        for step, batch in enumerate(tc.make_batches(steps)):
            tc.backward(model, batch)
            tc.backward(reference_model, batch)
            norm = torch.nn.utils.clip_grad_norm_(reference_model.parameters(), max_norm)
            opt.step()
            reference.step()
            self.assertLessEqual(tc.worst_error(model, reference_model), tc.RTOL,
                                 f"{rule} step {step}")
            # The norm before clipping, as clip_grad_norm_ returns it (to rounding: torch
            # takes the norm of float32 per-tensor norms, fuseopt sums squares in float64).
            self.assertAlmostEqual(opt.last_grad_norm()[0], float(norm),
                                   delta=1e-5 * float(norm))
            opt.zero_grad()
            reference.zero_grad()

    def test_adam_clipped_to_a_small_norm_matches_torch(self):
        self.run_pair("adam", torch.optim.Adam, 0.05, lr=0.01)

    def test_sgd_with_momentum_clipped_matches_torch(self):
        self.run_pair("sgd", torch.optim.SGD, 0.1, lr=0.01, momentum=0.9)

    def test_a_large_norm_changes_nothing(self):
        self.run_pair("adamw", torch.optim.AdamW, 1e6, lr=0.01, steps=10)

    def test_last_grad_norm_needs_clipping(self):
        opt = fuseopt.torch.Optimizer(tc.make_model().parameters(), "adam")
        with self.assertRaises(fuseopt.UserError):
            opt.last_grad_norm()


class LossScalingTest(unittest.TestCase):
    def test_unscaled_in_the_step_and_skipped_on_inf(self):
        rng = np.random.default_rng(3)
        param = rng.standard_normal(1000).astype(np.float32)
        grad = np.zeros_like(param)
        opt = fuseopt.make_optimizer("adam", backend="cpu", loss_scaling=True, threads=1,
                                     lr=0.01, grad_scale=2.0 ** 12)
        self.assertIn("grad_scale", opt.hyper_names)
        opt.add_tensor(param, grad)
        reference = torch.nn.Parameter(torch.from_numpy(param.copy()))
        torch_opt = torch.optim.Adam([reference], lr=0.01, foreach=False)
        for step in range(8):
            g = rng.standard_normal(1000).astype(np.float32)
            grad[:] = g * np.float32(2.0 ** 12)  # the scaled gradient, exact (a power of 2)
            if step == 5:
                grad[17] = np.inf
            taken = opt.step()
            self.assertEqual(taken, step != 5)
            if taken:
                reference.grad = torch.from_numpy(g)
                torch_opt.step()
            self.assertEqual(opt.step_count(0), step + (0 if step < 5 else -1) + 1)
            np.testing.assert_allclose(param, reference.detach().numpy(), rtol=1e-5,
                                       atol=1e-6 * float(np.abs(param).max()))
            self.assertEqual(opt.last_step_skipped(), step == 5)

    def test_only_device_kernels_decide_on_the_device(self):
        # The decision on the device is tested on the emulated GPU (C++) and on a GPU; here:
        # host kernels refuse it clearly and keep deciding on the host.
        opt = fuseopt.make_optimizer("adam", backend="cpu", loss_scaling=True, threads=1)
        self.assertFalse(opt.kernel.decides_on_device)
        self.assertFalse(opt.decides_on_device)
        with self.assertRaisesRegex(fuseopt.UserError, "only device kernels"):
            opt.set_decide_on_device(True)
        with self.assertRaisesRegex(fuseopt.UserError, "set_decide_on_device"):
            opt.set_device_loss_scale(0, 0)
        opt.set_decide_on_device(False)  # already off: nothing to do

    def test_storage_choices_reach_the_kernel(self):
        kernel = fuseopt.compile("adam", backend="interp", storage={"exp_avg": "bf16"})
        self.assertIn("exp_avg_bf16", kernel.config)
        self.assertEqual(kernel.storage, {"param": "f32", "grad": "f32", "exp_avg": "bf16",
                                          "exp_avg_sq": "f32"})
        with self.assertRaises(fuseopt.UserError):
            fuseopt.compile("adam", backend="interp", storage={"exp_avg": "fp8"})


if __name__ == "__main__":
    unittest.main()
