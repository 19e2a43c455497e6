"""What the torch tests share: the rules torch.optim also has, their torch names and
settings (from tests/torch/compare_with_torch.py), a small MLP and its data, and the
comparison with its tolerance.

Tolerance (the same as tests/torch/compare_with_torch.py): an element passes when
|got - want| <= atol + RTOL * |want|, RTOL = 1e-5, atol = 1e-6 * max|want| over the tensor
(about 8 float32 ulps of its largest value). The atol covers elements near zero, which
inherit the absolute rounding error of the larger values they are computed from.
"""

import inspect
import itertools
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "torch"))

import torch  # noqa: E402

import compare_with_torch as reference  # noqa: E402  (its RULES table and torch introspection)

RTOL = 1e-5
ATOL_FRACTION = 1e-6
STEPS = 50
SKIP = 77


def torch_class(rule):
    return getattr(torch.optim, reference.RULES[rule].torch_class)


def _settings(rule):
    """Hyper settings to test (fuseopt names): the first and the last of the reference
    table (defaults, and every hyper away from its default where the table has that)."""
    table = reference.RULES[rule].settings
    chosen = [table[0], table[-1]] if len(table) > 1 else [table[0]]
    if rule == "sgd":
        # SGD: momentum without dampening (so that nesterov is valid), no momentum, and
        # every hyper set. lr 0.01: at the table's 0.05 with momentum 0.9 this MLP's
        # training amplifies float32 rounding differences past 1e-5 within 50 steps
        # (measured 2.0e-5; 2.2e-6 at most at lr 0.01), a property of the training, not
        # of either optimizer.
        chosen = [dict(table[i], lr=0.01) for i in (2, 1, -1)]
    return chosen


#: {rule: [hyper overrides]} for every rule the tests cover.
SETTINGS = {rule: _settings(rule) for rule in reference.RULES}


def option_combinations(rule):
    """Every combination of the rule's boolean options that the installed torch has."""
    spec = reference.RULES[rule]
    supported = [o for o in spec.options if o in reference.torch_options(spec)]
    for flags in itertools.product((False, True), repeat=len(supported)):
        yield dict(zip(supported, flags))


def full_hypers(rule, overrides):
    spec = reference.RULES[rule]
    defaults = reference.torch_hyper_defaults(spec)
    hypers = {}
    for name in spec.hypers:
        hypers[name] = float(overrides.get(name, defaults.get(name, 1e-2)))
    return hypers


def valid(rule, hypers, options):
    spec = reference.RULES[rule]
    full = {o: False for o in spec.options}
    full.update(options)
    return spec.valid is None or spec.valid(hypers, full)


def torch_kwargs(rule, hypers, options):
    return reference.to_torch_kwargs(reference.RULES[rule], hypers, options)


def fuseopt_kwargs(rule, hypers, options):
    """fuseopt.torch keywords in torch's spelling (betas=...), to exercise the mapping."""
    kwargs = {}
    for name, parts in reference.TUPLE_HYPERS.items():
        if all(p in hypers for p in parts):
            kwargs[name] = tuple(hypers[p] for p in parts)
    for name, value in hypers.items():
        if not any(name in parts and key in kwargs for key, parts in reference.TUPLE_HYPERS.items()):
            kwargs[name] = value
    kwargs.update(options)
    return kwargs


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(6, 12)
        self.out = torch.nn.Linear(12, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


def make_model(seed=0):
    torch.manual_seed(seed)
    return Mlp()


def make_batches(steps=STEPS, seed=1):
    generator = torch.Generator().manual_seed(seed)
    xs = torch.randn(steps, 16, 6, generator=generator)
    ys = torch.randn(steps, 16, 3, generator=generator)
    return list(zip(xs, ys))


def backward(model, batch):
    x, y = batch
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    return loss


def relative_error(got, want):
    """max |got - want| / (|want| + atol / RTOL); <= RTOL means every element passes."""
    got = got.detach().double()
    want = want.detach().double()
    if not torch.isfinite(got).all():
        return float("inf")
    floor = ATOL_FRACTION / RTOL * float(want.abs().max())
    floor = max(floor, 1e-300)
    return float(((got - want).abs() / (want.abs() + floor)).max())


def worst_error(model_a, model_b):
    return max(relative_error(a, b) for a, b in zip(model_a.parameters(), model_b.parameters()))


def nadam_needs_foreach():
    """torch < 2.0's single-tensor NAdam has pytorch/pytorch#92699 (see compare_with_torch)."""
    return reference.use_foreach(reference.RULES["nadam"])


def torch_signature_has(rule, name):
    return name in inspect.signature(torch_class(rule).__init__).parameters
