"""fuseopt.torch.Optimizer against torch.optim, for every built-in rule torch.optim has.

Each case trains two copies of a small MLP (tests/python/torch_cases.py) from the same seed
on the same 50 batches, one with torch.optim (foreach=False) and one with fuseopt; the
parameters agree at every step to rtol 1e-5 with atol 1e-6 * max|param| (torch_cases.py
says why). The models train independently, so each one's gradients come from its own
parameters: the comparison includes how rounding differences feed back through training.
Cases: two hyper settings (defaults, and every hyper away from its default) x every
combination of the options the installed torch has, on the cpu backend; the first
setting on the interp backend too; two param groups with their own hypers; and a
state_dict save/load in the middle, which must continue bit-identically to an
uninterrupted fuseopt run. With maximize=True the loss is negated, so that the run still
descends (an ascent diverges, and a diverging run amplifies any rounding difference).
"""

import copy
import io
import sys
import unittest

try:
    import torch
except ImportError:
    print("skipped: needs torch")
    sys.exit(77)

import fuseopt
import fuseopt.torch

import torch_cases as tc

RULES = ["sgd", "adam", "adamw", "nadam", "radam", "adamax", "adagrad", "adadelta", "rmsprop",
         "rprop"]


def torch_optimizer(rule, params, hypers, options):
    kwargs = tc.torch_kwargs(rule, hypers, options)
    return tc.torch_class(rule)(params, **kwargs)


def fuseopt_optimizer(rule, params, hypers, options, backend="cpu"):
    return fuseopt.torch.Optimizer(params, rule, backend=backend,
                                   **tc.fuseopt_kwargs(rule, hypers, options))


def backward(model, batch, options):
    x, y = batch
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(x), y)
    (-loss if options.get("maximize") else loss).backward()


class ParityTest(unittest.TestCase):
    def assert_close(self, step, got, want, what):
        error = tc.worst_error(got, want)
        self.assertLessEqual(error, tc.RTOL, f"{what}: step {step}: max rel err {error:.2e}")

    def run_pair(self, rule, hypers, options, backend, groups=False):
        reference_model, model = tc.make_model(), tc.make_model()
        if groups:
            # The hidden layer with the case's hypers, the output layer with its own lr (and
            # weight decay, where the rule has one).
            other = dict(hypers, lr=hypers["lr"] * 0.5)
            if "weight_decay" in other:
                other["weight_decay"] = 0.05
            theirs = torch_optimizer(rule, [{"params": reference_model.hidden.parameters()},
                                            {"params": reference_model.out.parameters(),
                                             **tc.torch_kwargs(rule, other, options)}],
                                     hypers, options)
            ours = fuseopt_optimizer(rule, [{"params": model.hidden.parameters()},
                                            {"params": model.out.parameters(),
                                             **tc.fuseopt_kwargs(rule, other, options)}],
                                     hypers, options, backend)
        else:
            theirs = torch_optimizer(rule, reference_model.parameters(), hypers, options)
            ours = fuseopt_optimizer(rule, model.parameters(), hypers, options, backend)
        what = f"{rule} {backend} {hypers} {options}" + (" two groups" if groups else "")
        for step, batch in enumerate(tc.make_batches(), 1):
            backward(reference_model, batch, options)
            backward(model, batch, options)
            theirs.step()
            ours.step()
            self.assert_close(step, model, reference_model, what)

    def cases(self, rule):
        for overrides in tc.SETTINGS[rule]:
            hypers = tc.full_hypers(rule, overrides)
            for options in tc.option_combinations(rule):
                if tc.valid(rule, hypers, options):
                    yield overrides, hypers, options

    def check_rule(self, rule):
        for index, (overrides, hypers, options) in enumerate(self.cases(rule)):
            backends = ("cpu", "interp") if overrides == tc.SETTINGS[rule][0] else ("cpu",)
            for backend in backends:
                with self.subTest(backend=backend, hypers=overrides, options=options):
                    self.run_pair(rule, hypers, options, backend)
        overrides, hypers, options = next(self.cases(rule))
        with self.subTest("two param groups"):
            self.run_pair(rule, hypers, options, "cpu", groups=True)
        with self.subTest("save and load"):
            self.check_save_load(rule, hypers, options)

    def check_save_load(self, rule, hypers, options):
        """50 steps uninterrupted against 25 + state_dict/load_state_dict (through
        torch.save, into a new model and optimizer) + 25: bit-identical; both match torch."""
        batches = tc.make_batches()
        whole_model = tc.make_model()
        whole = fuseopt_optimizer(rule, whole_model.parameters(), hypers, options)
        reference_model = tc.make_model()
        reference = torch_optimizer(rule, reference_model.parameters(), hypers, options)
        first_model = tc.make_model()
        first = fuseopt_optimizer(rule, first_model.parameters(), hypers, options)
        resumed_model = resumed = None
        for step, batch in enumerate(batches, 1):
            backward(whole_model, batch, options)
            whole.step()
            backward(reference_model, batch, options)
            reference.step()
            if step <= 25:
                backward(first_model, batch, options)
                first.step()
                if step == 25:
                    buffer = io.BytesIO()
                    torch.save({"model": first_model.state_dict(),
                                "optimizer": first.state_dict()}, buffer)
                    buffer.seek(0)
                    saved = torch.load(buffer)
                    resumed_model = tc.make_model(seed=123)  # other initial values
                    resumed_model.load_state_dict(saved["model"])
                    resumed = fuseopt_optimizer(rule, resumed_model.parameters(), hypers,
                                                options)
                    resumed.load_state_dict(saved["optimizer"])
            else:
                backward(resumed_model, batch, options)
                resumed.step()
                for a, b in zip(resumed_model.parameters(), whole_model.parameters()):
                    self.assertTrue(torch.equal(a, b), f"{rule}: step {step} after load differs")
            self.assert_close(step, whole_model, reference_model, f"{rule} save/load")
        ours = whole.state_dict()["state"]
        again = resumed.state_dict()["state"]
        for index, values in ours.items():
            for name, value in values.items():
                other = again[index][name]
                if isinstance(value, torch.Tensor):
                    self.assertTrue(torch.equal(value, other), f"{rule}: state {name}")
                else:
                    self.assertEqual(value, other, f"{rule}: scalar {name}")


def make_test(rule):
    def test(self):
        self.check_rule(rule)
    test.__doc__ = f"{rule}: every setting and option combination, groups, save/load"
    return test


for _rule in RULES:
    setattr(ParityTest, f"test_{_rule}", make_test(_rule))


if __name__ == "__main__":
    unittest.main()
