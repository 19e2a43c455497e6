"""fuseopt.torch.Optimizer as a torch.optim.Optimizer: closures, parameters without
gradients, state_dict names, loading torch.optim's state, LR schedulers without
recompiling, and clear errors for what it cannot step."""

import os
import sys
import tempfile
import unittest

try:
    import torch
except ImportError:
    print("skipped: needs torch")
    sys.exit(77)

import fuseopt
import fuseopt.torch

import torch_cases as tc


def backward(model, batch):
    return tc.backward(model, batch)


class BehaviourTest(unittest.TestCase):
    def test_closure_returns_the_loss_and_steps(self):
        model = tc.make_model()
        opt = fuseopt.torch.Optimizer(model.parameters(), "adam", lr=0.01)
        reference_model = tc.make_model()
        reference = torch.optim.Adam(reference_model.parameters(), lr=0.01, foreach=False)
        for batch in tc.make_batches(10):
            loss = opt.step(lambda: backward(model, batch))
            want = reference.step(lambda: backward(reference_model, batch))
            self.assertAlmostEqual(float(loss), float(want), delta=1e-5 * abs(float(want)))
        self.assertLessEqual(tc.worst_error(model, reference_model), tc.RTOL)

    def test_parameters_without_gradients_are_skipped(self):
        model, reference_model = tc.make_model(), tc.make_model()
        opt = fuseopt.torch.Optimizer(model.parameters(), "adam", lr=0.01)
        reference = torch.optim.Adam(reference_model.parameters(), lr=0.01, foreach=False)
        for step, batch in enumerate(tc.make_batches(12), 1):
            for m, o in ((model, opt), (reference_model, reference)):
                backward(m, batch)
                if step <= 6:
                    m.out.bias.grad = None  # no gradient for the first 6 steps
                o.step()
            self.assertLessEqual(tc.worst_error(model, reference_model), tc.RTOL)
            if step <= 6:
                self.assertNotIn(model.out.bias, opt.state)
        steps = opt.state_dict()["state"]
        self.assertEqual(float(opt.state[model.out.bias]["step"]), 6.0)
        self.assertEqual(float(opt.state[model.out.weight]["step"]), 12.0)
        self.assertEqual(len(steps), 4)

    def test_zero_grad(self):
        model = tc.make_model()
        opt = fuseopt.torch.Optimizer(model.parameters(), "sgd", lr=0.1)
        backward(model, tc.make_batches(1)[0])
        opt.zero_grad(set_to_none=True)
        self.assertTrue(all(p.grad is None for p in model.parameters()))
        opt.step()  # nothing has a gradient: nothing steps
        self.assertEqual(len(opt.state), 0)

    def test_state_names_are_torchs(self):
        for rule in ("adam", "nadam", "rprop", "rmsprop", "adagrad"):
            with self.subTest(rule):
                model, reference_model = tc.make_model(), tc.make_model()
                opt = fuseopt.torch.Optimizer(model.parameters(), rule)
                reference = tc.torch_class(rule)(reference_model.parameters(),
                                                 **({"lr": 0.01} if rule == "sgd" else {}))
                batch = tc.make_batches(1)[0]
                backward(model, batch)
                backward(reference_model, batch)
                opt.step()
                reference.step()
                ours = opt.state_dict()["state"][0]
                theirs = reference.state_dict()["state"][0]
                self.assertLessEqual(set(theirs), set(ours))
                self.assertIn("step", ours)

    def test_loads_torch_optim_state(self):
        """A torch.optim.Adam checkpoint continues in fuseopt: the state names are torch's."""
        model, reference_model = tc.make_model(), tc.make_model()
        reference = torch.optim.Adam(reference_model.parameters(), lr=0.01, amsgrad=True,
                                     foreach=False)
        batches = tc.make_batches(20)
        for batch in batches[:10]:
            backward(reference_model, batch)
            reference.step()
        model.load_state_dict(reference_model.state_dict())
        opt = fuseopt.torch.Optimizer(model.parameters(), "adam", lr=0.01, amsgrad=True)
        opt.load_state_dict(reference.state_dict())
        for batch in batches[10:]:
            for m, o in ((model, opt), (reference_model, reference)):
                backward(m, batch)
                o.step()
            self.assertLessEqual(tc.worst_error(model, reference_model), tc.RTOL)

    def test_lr_scheduler_changes_lr_without_recompiling(self):
        model, reference_model = tc.make_model(), tc.make_model()
        opt = fuseopt.torch.Optimizer(model.parameters(), "sgd", lr=0.1, momentum=0.9)
        reference = torch.optim.SGD(reference_model.parameters(), lr=0.1, momentum=0.9,
                                    foreach=False)
        schedulers = [torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)
                      for o in (opt, reference)]
        core, kernel = opt._groups[0].core, opt._groups[0].kernel
        for batch in tc.make_batches(12):
            for m, o in ((model, opt), (reference_model, reference)):
                backward(m, batch)
                o.step()
            for scheduler in schedulers:
                scheduler.step()
            self.assertLessEqual(tc.worst_error(model, reference_model), tc.RTOL)
        self.assertAlmostEqual(opt.param_groups[0]["lr"], 0.1 * 0.5 ** 4)
        self.assertEqual(core.hyper("lr"), 0.1 * 0.5 ** 3)  # the last step's
        self.assertIs(opt._groups[0].core, core)
        self.assertIs(opt._groups[0].kernel, kernel)

    def test_a_rule_file_of_ones_own(self):
        rule = ('rule plain "SGD without extras"\nhyper lr = 0.1\n'
                'step {\n  param = param - lr * grad\n}\n')
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "plain.opt")
            with open(path, "w") as f:
                f.write(rule)
            model, reference_model = tc.make_model(), tc.make_model()
            opt = fuseopt.torch.Optimizer(model.parameters(), path, lr=0.05)
        # The file is gone: the groups compile from the text read at construction.
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
        reference = torch.optim.SGD(reference_model.parameters(), lr=0.05, foreach=False)
        for batch in tc.make_batches(10):
            for m, o in ((model, opt), (reference_model, reference)):
                tc.backward(m, batch)
                o.step()
            self.assertLessEqual(tc.worst_error(model, reference_model), tc.RTOL)

    def test_betas_and_their_parts(self):
        model = tc.make_model()
        opt = fuseopt.torch.Optimizer(model.parameters(), "adam", betas=(0.8, 0.9))
        self.assertEqual(opt.param_groups[0]["betas"], (0.8, 0.9))
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(3))], "beta2": 0.95})
        self.assertEqual(opt.param_groups[1]["betas"], (0.8, 0.95))
        self.assertEqual(opt._groups[1].core.hyper("beta2"), 0.95)

    def test_groups_with_other_options_compile_other_kernels(self):
        model = tc.make_model()
        opt = fuseopt.torch.Optimizer([{"params": model.hidden.parameters()},
                                       {"params": model.out.parameters(), "amsgrad": True}],
                                      "adam")
        self.assertEqual(opt._groups[0].kernel.config, "adam_amsgrad0_maximize0")
        self.assertEqual(opt._groups[1].kernel.config, "adam_amsgrad1_maximize0")
        opt.param_groups[0]["amsgrad"] = True
        backward(model, tc.make_batches(1)[0])
        with self.assertRaisesRegex(fuseopt.UserError, "compile-time"):
            opt.step()

    @unittest.skipUnless(torch.cuda.is_available() and not fuseopt.cuda_unavailable_reason(),
                         "needs a GPU that both torch and fuseopt's cuda backend can use")
    def test_cuda_parameters_step_on_the_device(self):
        device = torch.device("cuda", fuseopt.cuda_device_ordinal())
        model, reference_model = tc.make_model().to(device), tc.make_model().to(device)
        opt = fuseopt.torch.Optimizer(model.parameters(), "adamw", lr=0.01)
        self.assertEqual(opt._groups[0].kernel.backend, "cuda")
        reference = torch.optim.AdamW(reference_model.parameters(), lr=0.01, foreach=False)
        for x, y in tc.make_batches(20):
            for m, o in ((model, opt), (reference_model, reference)):
                tc.backward(m, (x.to(device), y.to(device)))
                o.step()
            errors = [tc.relative_error(a.cpu(), b.cpu())
                      for a, b in zip(model.parameters(), reference_model.parameters())]
            self.assertLessEqual(max(errors), tc.RTOL)
        state = opt.state_dict()["state"][0]
        self.assertEqual(state["exp_avg"].device, device)
        with self.assertRaisesRegex(fuseopt.UserError, "device memory|host memory"):
            fuseopt.torch.Optimizer(tc.make_model().parameters(), "adam", backend="cuda")

    def test_unsupported_input_is_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, "float64"):
            fuseopt.torch.Optimizer([torch.nn.Parameter(torch.ones(3, dtype=torch.float64))],
                                    "adam")
        with self.assertRaisesRegex(ValueError, "contiguous"):
            fuseopt.torch.Optimizer([torch.nn.Parameter(torch.ones(3, 4).t())], "adam")
        with self.assertRaisesRegex(fuseopt.UserError, "no hyper or option 'lrr'"):
            fuseopt.torch.Optimizer(tc.make_model().parameters(), "adam", lrr=0.1)
        with self.assertRaisesRegex(fuseopt.UserError, "capturable"):
            fuseopt.torch.Optimizer(tc.make_model().parameters(), "adam", capturable=True)
        with self.assertRaisesRegex(fuseopt.UserError, "cannot read"):
            fuseopt.torch.Optimizer(tc.make_model().parameters(), "/nonexistent/x.opt")
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "bad.opt")
            with open(path, "w") as f:
                f.write('rule bad "typo"\nhyper lr = 1\nstep { param = param - lr * gard }\n')
            with self.assertRaisesRegex(fuseopt.RuleError, "did you mean 'grad'"):
                fuseopt.torch.Optimizer(tc.make_model().parameters(), path)
        embedding = torch.nn.Embedding(10, 4, sparse=True)
        opt = fuseopt.torch.Optimizer(embedding.parameters(), "sgd", lr=0.1)
        embedding(torch.tensor([1, 2])).sum().backward()
        before = embedding.weight.detach().clone()
        with self.assertRaisesRegex(fuseopt.UserError, "sparse"):
            opt.step()
        self.assertTrue(torch.equal(embedding.weight, before))
        # foreach=False, as code written for torch.optim passes, is accepted.
        fuseopt.torch.Optimizer(tc.make_model().parameters(), "adam", foreach=False)


if __name__ == "__main__":
    unittest.main()
