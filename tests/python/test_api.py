"""The fuseopt Python module over NumPy (and torch tensors where torch is installed): rules,
checking with the compiler's diagnostics, compiling, the Optimizer on borrowed memory,
errors as exceptions, tuning and packs.

Environment (set by tests/python/CMakeLists.txt): PYTHONPATH names the build tree's
package, FUSEOPT_CLI the `fuseopt` program (to compare diagnostics and build a pack),
FUSEOPT_CACHE a scratch cache.
"""

import os
import subprocess
import sys
import tempfile
import unittest

try:
    import numpy as np
except ImportError:
    print("skipped: needs numpy")
    sys.exit(77)

import fuseopt

try:
    import torch
except ImportError:
    torch = None

CLI = os.environ.get("FUSEOPT_CLI")
BAD_RULE = """rule bad "a rule with two errors"
hyper lr = 1e-3
step {
  param = param - lr * gard
  param = param - unknown
}
"""


def arrays(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)


class RulesTest(unittest.TestCase):
    def test_builtin_rules_and_their_declarations(self):
        self.assertIn("adam", fuseopt.rules())
        self.assertEqual(fuseopt.rules(), sorted(fuseopt.rules()))
        rule = fuseopt.Rule("adam")
        self.assertEqual(rule.name, "adam")
        self.assertEqual(list(rule.hypers), ["lr", "beta1", "beta2", "eps", "weight_decay"])
        self.assertEqual(rule.hypers["beta2"], 0.999)
        self.assertEqual(rule.options, {"amsgrad": False, "maximize": False})
        self.assertEqual(rule.states, {"exp_avg": None, "exp_avg_sq": None,
                                       "max_exp_avg_sq": "amsgrad"})
        self.assertEqual(fuseopt.Rule("nadam").scalars, {"mu_product": 1.0})
        self.assertIn("rule adam", fuseopt.rule_source("adam"))

    def test_rule_from_file_and_text(self):
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "mine.opt")
            with open(path, "w") as f:
                f.write(fuseopt.rule_source("sgd").replace("rule sgd", "rule mine"))
            self.assertEqual(fuseopt.Rule(path).name, "mine")
        self.assertEqual(fuseopt.Rule.from_text(fuseopt.rule_source("lion")).name, "lion")

    def test_rule_errors_carry_the_diagnostics(self):
        with self.assertRaises(fuseopt.RuleError) as caught:
            fuseopt.Rule.from_text(BAD_RULE, "bad.opt")
        error = caught.exception
        self.assertIsInstance(error, ValueError)
        self.assertIsInstance(error, fuseopt.UserError)
        self.assertEqual([(d.severity, d.line) for d in error.diagnostics],
                         [("error", 4), ("error", 5)])
        self.assertIn("did you mean 'grad'?", error.diagnostics[0].message)
        self.assertEqual(str(error), "".join(d.rendered for d in error.diagnostics))
        self.assertTrue(error.diagnostics[0].rendered.startswith("bad.opt:4:24: error: "))

    def test_check_reports_like_the_cli(self):
        result = fuseopt.check_text(BAD_RULE, "bad.opt")
        self.assertFalse(result.ok)
        self.assertFalse(result)
        self.assertEqual(result.errors, 2)
        self.assertIsNone(result.rule)
        self.assertTrue(fuseopt.check("adam").ok)
        if not CLI:
            self.skipTest("FUSEOPT_CLI not set")
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "bad.opt")
            with open(path, "w") as f:
                f.write(BAD_RULE)
            done = subprocess.run([CLI, "check", path], capture_output=True, text=True)
            self.assertEqual(done.returncode, 1)
            self.assertEqual(fuseopt.check(path).rendered, done.stderr)

    def test_missing_rule_is_a_user_error(self):
        with self.assertRaisesRegex(fuseopt.UserError, "nosuchrule"):
            fuseopt.Rule("nosuchrule")
        with self.assertRaises(fuseopt.UserError):
            fuseopt.check("/nonexistent/rule.opt")


class CompileTest(unittest.TestCase):
    def test_kernel_names_its_configuration(self):
        kernel = fuseopt.compile("adam", backend="cpu", options={"amsgrad": True})
        self.assertEqual(kernel.backend, "cpu")
        self.assertEqual(kernel.config, "adam_amsgrad1_maximize0")
        self.assertFalse(kernel.device_memory)
        self.assertEqual(fuseopt.compile("sgd", backend="interp").backend, "interp")

    def test_bad_arguments_are_user_errors(self):
        with self.assertRaisesRegex(fuseopt.UserError, "backend"):
            fuseopt.compile("adam", backend="tpu")
        with self.assertRaisesRegex(fuseopt.UserError, "nosuch"):
            fuseopt.compile("adam", backend="cpu", options={"nosuch": True})
        with self.assertRaises(fuseopt.RuleError):
            fuseopt.compile_text(BAD_RULE, backend="cpu")

    def test_cuda_without_a_gpu_is_an_environment_error(self):
        reason = fuseopt.cuda_unavailable_reason()
        if not reason:
            self.skipTest("the cuda backend works here")
        with self.assertRaises(fuseopt.EnvironmentError) as caught:
            fuseopt.compile("adam", backend="cuda")
        self.assertIsInstance(caught.exception, RuntimeError)
        self.assertEqual(fuseopt.resolve_backend("auto"), "cpu")


class OptimizerTest(unittest.TestCase):
    def test_steps_numpy_memory_in_place_like_the_interpreter(self):
        results = []
        for backend in ("interp", "cpu"):
            param, grad = arrays(1000)
            opt = fuseopt.make_optimizer("adamw", backend=backend, lr=0.01, weight_decay=0.1)
            index = opt.add_tensor(param, grad)
            before = param.copy()
            for _ in range(5):
                opt.step()
            self.assertEqual(opt.step_count(index), 5)
            self.assertFalse(np.array_equal(param, before))  # written in place
            np.testing.assert_array_equal(opt.read_param(index), param)
            results.append(param)
        np.testing.assert_allclose(results[1], results[0], rtol=1e-6, atol=1e-7)

    def test_state_views_share_memory(self):
        param, grad = arrays(64)
        opt = fuseopt.make_optimizer("adam", backend="cpu")
        opt.add_tensor(param, grad)
        opt.step()
        view = opt.state(0, "exp_avg")
        np.testing.assert_allclose(view, 0.1 * grad, rtol=1e-6)
        view[:] = 2.0
        np.testing.assert_array_equal(opt.read_state(0, "exp_avg"), np.full(64, 2.0, np.float32))
        del opt  # the view keeps the optimizer alive
        self.assertEqual(float(view[0]), 2.0)

    def test_set_buffers_enabled_and_step_count(self):
        p1, g1 = arrays(32, 1)
        p2, g2 = arrays(32, 2)
        opt = fuseopt.make_optimizer("sgd", backend="cpu", lr=0.5)
        opt.add_tensor(p1, g1)
        opt.add_tensor(p2, g2)
        opt.set_enabled(1, False)
        before = p2.copy()
        opt.step()
        np.testing.assert_array_equal(p2, before)
        self.assertEqual((opt.step_count(0), opt.step_count(1)), (1, 0))
        new_grad = np.ones(32, np.float32)
        opt.set_buffers(0, p1, new_grad)
        start = p1.copy()
        opt.set_step_count(0, 7)
        opt.step()
        np.testing.assert_allclose(p1, start - 0.5, rtol=1e-6)
        self.assertEqual(opt.step_count(0), 8)

    def test_save_and_load_continue_bit_identically(self):
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "state.bin")
            pa, ga = arrays(100)
            a = fuseopt.make_optimizer("nadam", backend="cpu")
            a.add_tensor(pa, ga)
            for _ in range(3):
                a.step()
            a.save(path)
            pb = pa.copy()
            b = fuseopt.make_optimizer("nadam", backend="cpu")
            b.add_tensor(pb, ga)
            b.load(path)
            for _ in range(3):
                a.step()
                b.step()
            np.testing.assert_array_equal(pa, pb)
            self.assertEqual(a.scalar(0, "mu_product"), b.scalar(0, "mu_product"))

    def test_hypers(self):
        opt = fuseopt.make_optimizer("adam", backend="cpu", lr=0.5)
        self.assertEqual(opt.hyper("lr"), 0.5)
        opt.set_hyper("lr", 0.25)
        self.assertEqual(opt.hypers["lr"], 0.25)
        with self.assertRaises(fuseopt.UserError):
            opt.set_hyper("nosuch", 1.0)
        with self.assertRaises(fuseopt.UserError):
            fuseopt.make_optimizer("adam", backend="cpu", nosuch=1.0)

    def test_bad_arrays_are_clear_errors(self):
        opt = fuseopt.make_optimizer("sgd", backend="cpu")
        good = np.zeros(8, np.float32)
        cases = [
            (np.zeros(8), good, "float32"),
            (np.zeros((4, 4), np.float32)[:, ::2], good, "contiguous"),
            (good, np.zeros(9, np.float32), "elements"),
            (np.frombuffer(bytes(32), np.float32), good, "writable"),
            (np.zeros(0, np.float32), np.zeros(0, np.float32), "empty"),
        ]
        for param, grad, words in cases:
            with self.subTest(words):
                with self.assertRaisesRegex(fuseopt.UserError, words):
                    opt.add_tensor(param, grad)
        with self.assertRaises(TypeError):
            opt.add_tensor([1.0, 2.0], good)
        with self.assertRaises(IndexError):
            opt.step_count(3)
        # A read-only gradient is fine: it is only read.
        grad = np.frombuffer(np.ones(8, np.float32).tobytes(), np.float32)
        opt.add_tensor(np.zeros(8, np.float32), grad)
        opt.step()
        with self.assertRaisesRegex(fuseopt.UserError, "state"):
            opt.read_state(0, "nosuch")

    @unittest.skipIf(torch is None, "needs torch")
    def test_torch_tensors_through_dlpack(self):
        param = torch.ones(10)
        grad = torch.full((10,), 0.5)
        opt = fuseopt.make_optimizer("sgd", backend="cpu", lr=1.0)
        opt.add_tensor(param, grad)
        opt.step()
        self.assertTrue(torch.equal(param, torch.full((10,), 0.5)))  # no copy: in place
        with self.assertRaisesRegex(fuseopt.UserError, "float32"):
            opt.add_tensor(torch.ones(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
        with self.assertRaisesRegex(fuseopt.UserError, "contiguous"):
            opt.add_tensor(torch.ones(4, 4).t(), torch.ones(16))
        # A view with an offset borrows the right memory.
        base = torch.zeros(20)
        opt.add_tensor(base[10:], torch.ones(10))
        opt.step()
        self.assertTrue(torch.equal(base[:10], torch.zeros(10)))
        self.assertTrue(torch.equal(base[10:], torch.full((10,), -1.0)))


class TuneAndPackTest(unittest.TestCase):
    def test_tune_records_a_result(self):
        reports = fuseopt.tune("sgd", sizes=[4096], budget=2.0)
        self.assertEqual(len(reports), 1)
        self.assertEqual(reports[0]["size"], 4096)
        self.assertIn(reports[0]["outcome"],
                      ("tuned", "already_tuned", "tuned_elsewhere", "no_valid_config"))
        with self.assertRaises(fuseopt.UserError):
            fuseopt.tune("sgd", sizes=[4096], budget=0)

    def test_pack_kernels_step(self):
        if not CLI:
            self.skipTest("FUSEOPT_CLI not set")
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "sgd.pack")
            subprocess.run([CLI, "pack", "build", "sgd", "-o", path, "--options",
                            "nesterov=false", "--options", "maximize=false"],
                           check=True, capture_output=True)
            pack = fuseopt.Pack(path)
            self.assertEqual(pack.rules(), ["sgd"])
            self.assertEqual(pack.verify(), [])
            self.assertTrue(pack.binaries())
            kernel = pack.load_kernel("sgd", {"nesterov": False, "maximize": False})
            opt = fuseopt.Optimizer(kernel, {"lr": 1.0})
            param = np.ones(16, np.float32)
            opt.add_tensor(param, np.full(16, 0.25, np.float32))
            opt.step()
            np.testing.assert_array_equal(param, np.full(16, 0.75, np.float32))
            with self.assertRaises(fuseopt.UserError):
                fuseopt.Pack(os.path.join(work, "nothing.pack"))


if __name__ == "__main__":
    unittest.main()
