#!/usr/bin/python3
"""Compare fuseopt's reference interpreter with torch.optim, case by case.

For every built-in rule that torch.optim also has, and every case in the table below
(hyper settings x every combination of the boolean options the installed torch supports),
this script makes a float32 parameter of shape (7, 13) and one gradient per step (seeded by
the case; per-step scales from 1/4 to 4, about 5% exact zeros), runs torch.optim on the
CPU in float32 (single-tensor path, foreach=False; NAdam on torch < 2.0 excepted, see
use_foreach), runs

    fuseopt run RULE --backend interp --param P.npy --grad G.npy --steps N --out DIR
                     --set NAME=VALUE ... --option NAME=true|false ...

and compares DIR/param.npy, DIR/<state>.npy for every tensor state torch keeps (torch's
'step' is skipped) and, for scalar states such as nadam's mu_product, DIR/scalars.json.

Tolerance: an element passes when |got - want| <= atol + RTOL * |want|, with RTOL = 1e-5
and atol = 1e-6 * max|want| over that array (about 8 float32 ulps of the array's largest
value). The atol is there for elements near zero (a momentum that changes sign, a parameter
passing through 0): they inherit the absolute rounding error of the larger values they were
computed from, a few ulps of max|want| after 20 float32 steps. Measured over 100 seeds of
these cases, torch in float32 against the same torch in float64 stays within 3.9e-6 with
this atol; with atol = 1e-7 * max|want| it reached 1.7e-5 and would fail. The error printed
is |got - want| / (|want| + atol / RTOL), which is <= RTOL exactly when every element
passes.

Exit codes: 0 all cases pass, 1 some case fails, 2 usage error, 77 torch or numpy missing
(CTest's skip code).

--self-test needs no fuseopt: it runs every torch case twice (the numbers must be
identical) and runs the whole harness for the sgd and adam cases against
fake_fuseopt.py, an independent float64 numpy re-implementation of those two rules that
speaks the same command line.
"""

import argparse
import dataclasses
import inspect
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib

SKIP = 77  # CTest SKIP_RETURN_CODE

try:
    import numpy as np
    import torch
except ImportError as error:
    print(f"torch-compare: skipped: needs torch and numpy ({error}); "
          "run it with a python that has both, e.g. Debian's /usr/bin/python3 "
          "with python3-torch installed")
    sys.exit(SKIP)

RTOL = 1e-5
ATOL_FRACTION = 1e-6  # atol = ATOL_FRACTION * max|want|, per compared array (see the docstring)
SHAPE = (7, 13)  # odd, so nothing lines up with a vector width
ZERO_GRAD_FRACTION = 0.05  # exact zeros in the gradients exercise sign(0) and friends
FUSEOPT_TIMEOUT_S = 120
HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_FUSEOPT = os.path.join(HERE, "fake_fuseopt.py")

# torch packs some hypers in tuples; fuseopt splits them (rules/README.md).
TUPLE_HYPERS = {
    "betas": ("beta1", "beta2"),
    "etas": ("etaminus", "etaplus"),
    "step_sizes": ("step_size_min", "step_size_max"),
}
# Boolean constructor arguments that select an implementation, not an update rule.
NOT_OPTIONS = {"foreach", "capturable", "differentiable", "fused"}


@dataclasses.dataclass(frozen=True)
class Rule:
    torch_class: str
    hypers: tuple  # fuseopt's hyper names, as in rules/README.md
    options: tuple  # fuseopt's option names, as in rules/README.md
    settings: tuple  # hyper overrides (fuseopt names), one dict per setting
    valid: object = None  # (hypers, options) -> bool, for combinations torch rejects


ADAM_HYPERS = ("lr", "beta1", "beta2", "eps", "weight_decay")
# Defaults, weight decay on, and every hyper away from its default (so that a --set
# that fuseopt ignored shows up).
ADAM_SETTINGS = (
    {},
    {"weight_decay": 0.1},
    {"lr": 1e-2, "beta1": 0.8, "beta2": 0.99, "eps": 1e-3, "weight_decay": 0.1},
)


def sgd_valid(hypers, options):
    # torch: "Nesterov momentum requires a momentum and zero dampening"
    return not options.get("nesterov") or (hypers["momentum"] > 0 and hypers["dampening"] == 0)


RULES = {
    "sgd": Rule(
        "SGD", ("lr", "momentum", "dampening", "weight_decay"), ("nesterov", "maximize"),
        tuple({"lr": 0.05, "momentum": momentum, "dampening": dampening, "weight_decay": wd}
              for momentum, dampening in ((0.0, 0.0), (0.9, 0.0), (0.9, 0.1))
              for wd in (0.0, 0.1)),
        sgd_valid),
    "adam": Rule("Adam", ADAM_HYPERS, ("amsgrad", "maximize"), ADAM_SETTINGS),
    "adamw": Rule("AdamW", ADAM_HYPERS, ("amsgrad", "maximize"), ADAM_SETTINGS),
    "nadam": Rule(
        "NAdam", ADAM_HYPERS + ("momentum_decay",), ("decoupled_weight_decay", "maximize"),
        ADAM_SETTINGS[:2] + ({**ADAM_SETTINGS[2], "momentum_decay": 0.04},)),
    # 20 steps take RAdam through its rho_t > 5 switch (at t = 6 for both beta2 here).
    "radam": Rule("RAdam", ADAM_HYPERS, ("decoupled_weight_decay", "maximize"), ADAM_SETTINGS),
    "adamax": Rule("Adamax", ADAM_HYPERS, ("maximize",), ADAM_SETTINGS),
    "adagrad": Rule(
        "Adagrad", ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"),
        ("maximize",),
        ({}, {"weight_decay": 0.1},
         {"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.1,
          "initial_accumulator_value": 0.1, "eps": 1e-3})),
    "adadelta": Rule(
        "Adadelta", ("lr", "rho", "eps", "weight_decay"), ("maximize",),
        ({}, {"weight_decay": 0.1}, {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.1})),
    "rmsprop": Rule(
        "RMSprop", ("lr", "alpha", "eps", "weight_decay", "momentum"), ("centered", "maximize"),
        tuple({"momentum": momentum, "weight_decay": wd}
              for momentum in (0.0, 0.9) for wd in (0.0, 0.1))
        + ({"lr": 5e-3, "alpha": 0.9, "eps": 1e-3, "weight_decay": 0.1, "momentum": 0.5},)),
    # The second setting makes both step-size clamps bite within 20 steps.
    "rprop": Rule(
        "Rprop", ("lr", "etaminus", "etaplus", "step_size_min", "step_size_max"), ("maximize",),
        ({}, {"lr": 0.02, "etaminus": 0.4, "etaplus": 1.3,
              "step_size_min": 1e-3, "step_size_max": 0.05})),
}


@dataclasses.dataclass
class Case:
    rule: str
    hypers: dict  # every fuseopt hyper of the rule, fuseopt names
    options: dict  # every fuseopt option of the rule
    overrides: dict  # the hypers the table set (for the name)
    torch_kwargs: dict

    @property
    def name(self):
        parts = [f"{k}={v:g}" for k, v in self.overrides.items()]
        parts += [f"+{k}" for k, v in self.options.items() if v]
        return f"{self.rule}[{','.join(parts)}]"

    @property
    def slug(self):
        return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", self.name).strip("_")


# --- torch introspection ------------------------------------------------------------

def torch_signature(rule):
    cls = getattr(torch.optim, rule.torch_class)
    params = inspect.signature(cls.__init__).parameters
    return {n: p.default for n, p in params.items() if n not in ("self", "params")}


def torch_options(rule):
    """The boolean arguments of the installed torch's constructor that are update options."""
    return {n for n, d in torch_signature(rule).items()
            if isinstance(d, bool) and n not in NOT_OPTIONS}


def torch_hyper_defaults(rule):
    """The installed torch's numeric defaults, under fuseopt's (split) names."""
    flat = {}
    for name, default in torch_signature(rule).items():
        if default is inspect.Parameter.empty or isinstance(default, bool) or default is None:
            continue
        if name in TUPLE_HYPERS:
            flat.update(zip(TUPLE_HYPERS[name], (float(x) for x in default)))
        elif isinstance(default, (int, float)):
            flat[name] = float(default)
    return flat


def to_torch_kwargs(rule, hypers, options):
    kwargs = {}
    signature = torch_signature(rule)
    for name in signature:
        if name in TUPLE_HYPERS and TUPLE_HYPERS[name][0] in hypers:
            kwargs[name] = tuple(hypers[part] for part in TUPLE_HYPERS[name])
        elif name in hypers:
            kwargs[name] = hypers[name]
        elif name in options:
            kwargs[name] = options[name]
    if "foreach" in signature:
        kwargs["foreach"] = use_foreach(rule)
    return kwargs


def use_foreach(rule):
    """foreach=False (the single-tensor path) except where that path has a known bug.

    torch < 2.0's _single_tensor_nadam computes mu_product_next = mu_product * mu * mu_next
    after mu_product already took mu (pytorch/pytorch#92699, fixed in 2.0); its foreach
    path, and every later torch, use mu_product * mu_next, which is what fuseopt follows.
    """
    if rule.torch_class == "NAdam":
        module = inspect.getmodule(torch.optim.NAdam)
        single = getattr(module, "_single_tensor_nadam", None)
        if single is not None and "mu_product * mu * mu_next" in inspect.getsource(single):
            return True
    return False


# --- cases ----------------------------------------------------------------------------

def make_cases(rule_names):
    cases = []
    for rule_name in rule_names:
        rule = RULES[rule_name]
        defaults = torch_hyper_defaults(rule)
        supported = [o for o in rule.options if o in torch_options(rule)]
        for overrides, flags in itertools.product(
                rule.settings, itertools.product((False, True), repeat=len(supported))):
            hypers = {}
            for name in rule.hypers:
                if name not in overrides and name not in defaults:
                    raise SystemExit(f"torch-compare: internal error: no value for {rule_name}'s "
                                     f"hyper '{name}' (torch's {rule.torch_class} has no default)")
                hypers[name] = float(overrides.get(name, defaults.get(name)))
            options = {o: False for o in rule.options}
            options.update(zip(supported, flags))
            if rule.valid and not rule.valid(hypers, options):
                continue
            cases.append(Case(rule_name, hypers, options, dict(overrides),
                              to_torch_kwargs(rule, hypers, options)))
    return cases


def unsupported_options(rule_names):
    """Lines that say which fuseopt options the installed torch cannot check."""
    notes = []
    for rule_name in rule_names:
        rule = RULES[rule_name]
        missing = [o for o in rule.options if o not in torch_options(rule)]
        if missing:
            notes.append(f"note: torch {torch.__version__} {rule.torch_class} has no "
                         f"{', '.join(missing)}; {rule_name} runs with "
                         f"{', '.join(m + '=false' for m in missing)} only")
        if use_foreach(rule):
            notes.append(f"note: {rule.torch_class} runs torch's foreach path: its "
                         "single-tensor path has pytorch/pytorch#92699")
    return notes


def make_data(case, steps):
    """A float32 parameter and `steps` different float32 gradients, seeded by the case."""
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    param = rng.standard_normal(SHAPE).astype(np.float32)
    scale = 2.0 ** rng.uniform(-2, 2, size=(steps, 1, 1))
    grads = rng.standard_normal((steps,) + SHAPE) * scale
    grads[rng.random(grads.shape) < ZERO_GRAD_FRACTION] = 0.0
    return param, grads.astype(np.float32)


# --- running both sides -----------------------------------------------------------------

def run_torch(case, param, grads):
    """Returns (param, {tensor state}, {scalar state}) after len(grads) torch steps."""
    rule = RULES[case.rule]
    p = torch.tensor(param, dtype=torch.float32, requires_grad=True)
    optimizer = getattr(torch.optim, rule.torch_class)([p], **case.torch_kwargs)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float32)  # a copy: some paths write the grad
        optimizer.step()
    tensors, scalars = {}, {}
    for name, value in optimizer.state[p].items():
        if name == "step" or value is None:
            continue
        if torch.is_tensor(value) and value.dim() > 0:
            tensors[name] = value.detach().numpy().copy()
        else:
            scalars[name] = float(value)
    return p.detach().numpy().copy(), tensors, scalars


def fuseopt_args(case, p_path, g_path, out_dir, steps):
    """The `fuseopt run` arguments for one case (everything after the program)."""
    args = ["run", case.rule, "--backend", "interp", "--param", p_path, "--grad", g_path,
            "--steps", str(steps), "--out", out_dir]
    for name, value in case.hypers.items():
        args += ["--set", f"{name}={value!r}"]
    for name, value in case.options.items():
        args += ["--option", f"{name}={'true' if value else 'false'}"]
    return args


def run_fuseopt(fuseopt, case, param, grads, work):
    """Runs fuseopt on the case; returns (param, load_state, scalars) or raises CaseError."""
    p_path, g_path = os.path.join(work, "P.npy"), os.path.join(work, "G.npy")
    out_dir = os.path.join(work, "out")
    shutil.rmtree(out_dir, ignore_errors=True)  # never compare a stale result
    np.save(p_path, param)
    np.save(g_path, grads)
    command = fuseopt + fuseopt_args(case, p_path, g_path, out_dir, len(grads))
    with open(os.path.join(work, "command.txt"), "w") as f:
        f.write(" ".join(command) + "\n")
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=FUSEOPT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CaseError(f"fuseopt ran past {FUSEOPT_TIMEOUT_S} s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise CaseError(f"fuseopt exited {done.returncode}: {last}")

    def load(name):
        path = os.path.join(out_dir, name + ".npy")
        if not os.path.exists(path):
            raise CaseError(f"fuseopt wrote no {name}.npy")
        array = np.load(path)
        if array.dtype != np.float32:
            raise CaseError(f"{name}.npy is {array.dtype}, not float32")
        return array

    try:
        with open(os.path.join(out_dir, "scalars.json")) as f:
            scalars = json.load(f)
    except (OSError, ValueError) as error:
        raise CaseError(f"cannot read scalars.json: {error}")
    return load, scalars


class CaseError(Exception):
    pass


# --- comparison -------------------------------------------------------------------------

def relative_error(got, want):
    """max |got - want| / (|want| + atol / RTOL); <= RTOL means every element passes."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise CaseError(f"shape {got.shape}, torch has {want.shape}")
    if not np.all(np.isfinite(got)):
        return float("inf")
    floor = ATOL_FRACTION / RTOL * float(np.max(np.abs(want), initial=0.0))
    error = np.abs(got - want) / (np.abs(want) + max(floor, np.finfo(np.float64).tiny))
    return float(np.max(error, initial=0.0))


def compare(expected, load, scalars):
    """Compares fuseopt's outputs with torch's; returns {name: relative error}."""
    want_param, want_tensors, want_scalars = expected
    errors = {"param": relative_error(load("param"), want_param)}
    for name, want in want_tensors.items():
        errors[name] = relative_error(load(name), want)
    for name, want in want_scalars.items():
        if name not in scalars:
            raise CaseError(f"scalars.json has no '{name}'")
        errors[name] = relative_error(scalars[name], want)
    return errors


def keep_expected(work, expected):
    want_param, want_tensors, want_scalars = expected
    os.makedirs(os.path.join(work, "torch"), exist_ok=True)
    np.save(os.path.join(work, "torch", "param.npy"), want_param)
    for name, array in want_tensors.items():
        np.save(os.path.join(work, "torch", name + ".npy"), array)
    with open(os.path.join(work, "torch", "scalars.json"), "w") as f:
        json.dump(want_scalars, f, indent=1)


def check_case(fuseopt, case, steps, work):
    """Runs one case; returns (passed, line to print)."""
    param, grads = make_data(case, steps)
    expected = run_torch(case, param, grads)
    keep_expected(work, expected)
    try:
        load, scalars = run_fuseopt(fuseopt, case, param, grads, work)
        errors = compare(expected, load, scalars)
    except CaseError as error:
        return False, f"FAIL {case.name}: {error}"
    worst = max(errors.values())
    if worst <= RTOL:
        return True, f"PASS {case.name}: max rel err {worst:.2e}"
    bad = ", ".join(f"{n} {e:.2e}" for n, e in errors.items() if not e <= RTOL)
    return False, f"FAIL {case.name}: max rel err {worst:.2e} > {RTOL:g} ({bad})"


def check_torch_repeatable(case, steps):
    """Self-test: two torch runs of the same case give identical numbers."""
    param, grads = make_data(case, steps)
    first, second = run_torch(case, param, grads), run_torch(case, param, grads)
    same = (np.array_equal(first[0], second[0])
            and first[1].keys() == second[1].keys()
            and all(np.array_equal(first[1][k], second[1][k]) for k in first[1])
            and first[2] == second[2])
    changed = not np.array_equal(first[0], param)
    if same and changed:
        return True, f"PASS {case.name}: torch repeatable, states {sorted(first[1]) + sorted(first[2])}"
    return False, f"FAIL {case.name}: " + ("torch runs differ" if not same else "param unchanged")


# --- main -------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuseopt", metavar="PATH", help="the fuseopt program")
    parser.add_argument("--rules", metavar="A,B", help=f"only these ({','.join(RULES)})")
    parser.add_argument("--steps", type=int, default=20, help="steps per case (default 20)")
    parser.add_argument("--keep", metavar="DIR", help="keep every case's files under DIR")
    parser.add_argument("--self-test", action="store_true",
                        help="check the harness against torch and fake_fuseopt.py; "
                             "needs no fuseopt")
    args = parser.parse_args(argv)
    args.rules = args.rules.split(",") if args.rules else list(RULES)
    unknown = [r for r in args.rules if r not in RULES]
    if unknown:
        parser.error(f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(RULES)}")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if not args.self_test:
        if not args.fuseopt:
            parser.error("--fuseopt PATH is required (or --self-test)")
        if not os.access(args.fuseopt, os.X_OK):
            parser.error(f"--fuseopt {args.fuseopt}: not an executable file")
    return args


def main(argv):
    args = parse_args(argv)
    torch.set_num_threads(1)
    cases = make_cases(args.rules)
    print(f"torch-compare: torch {torch.__version__}, numpy {np.__version__}, "
          f"{len(cases)} cases, {args.steps} steps, rtol {RTOL:g}, "
          f"atol {ATOL_FRACTION:g} * max|torch|")
    for note in unsupported_options(args.rules):
        print(note)

    with tempfile.TemporaryDirectory(prefix="torch-compare-") as scratch:
        root = os.path.abspath(args.keep) if args.keep else scratch
        passed = failed = 0
        for case in cases:
            work = os.path.join(root, case.slug)
            os.makedirs(work, exist_ok=True)
            results = []
            if args.self_test:
                results.append(check_torch_repeatable(case, args.steps))
                if case.rule in ("sgd", "adam"):
                    fake = [sys.executable, FAKE_FUSEOPT]
                    ok, line = check_case(fake, case, args.steps, work)
                    results.append((ok, line.replace(":", " vs numpy:", 1)))
            else:
                results.append(check_case([os.path.abspath(args.fuseopt)], case,
                                          args.steps, work))
            for ok, line in results:
                print(line, flush=True)
                passed += ok
                failed += not ok
    label = "torch-compare self-test" if args.self_test else "torch-compare"
    print(f"{label}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
