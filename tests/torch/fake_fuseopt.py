#!/usr/bin/python3
"""A stand-in for `fuseopt run` that knows only sgd and adam, for compare_with_torch.py's
--self-test. It is written from rules/README.md and shared/reference/optimizers.md, not
from torch, and computes in float64 with numpy, so agreeing with torch checks the harness:
data files, the command line, the hyper and option names, and the state names.

    fake_fuseopt.py run RULE --param P.npy --grad G.npy --out DIR [--steps N]
                    [--set NAME=VALUE]... [--option NAME=true|false]... [--backend B]

Writes DIR/param.npy, DIR/<state>.npy (float32) and DIR/scalars.json like `fuseopt run`.
Exit 1 for a user error (unknown rule, hyper or option, bad file), 2 for a usage error.
"""

import argparse
import json
import os
import sys

import numpy as np

HYPERS = {
    "sgd": {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0},
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
}
OPTIONS = {
    "sgd": {"nesterov": False, "maximize": False},
    "adam": {"amsgrad": False, "maximize": False},
}


def sgd(p, grads, h, o):
    buf = None
    for g in grads:
        if o["maximize"]:
            g = -g
        if h["weight_decay"] != 0:
            g = g + h["weight_decay"] * p
        if h["momentum"] != 0:
            buf = g.copy() if buf is None else h["momentum"] * buf + (1 - h["dampening"]) * g
            d = g + h["momentum"] * buf if o["nesterov"] else buf
        else:
            d = g
        p = p - h["lr"] * d
    return p, {"momentum_buffer": np.zeros_like(p) if buf is None else buf}


def adam(p, grads, h, o):
    m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    b1, b2 = h["beta1"], h["beta2"]
    for t, g in enumerate(grads, start=1):
        if o["maximize"]:
            g = -g
        if h["weight_decay"] != 0:
            g = g + h["weight_decay"] * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        s = v
        if o["amsgrad"]:
            vmax = np.maximum(vmax, v)
            s = vmax
        denom = np.sqrt(s) / np.sqrt(1 - b2 ** t) + h["eps"]
        p = p - h["lr"] / (1 - b1 ** t) * m / denom
    states = {"exp_avg": m, "exp_avg_sq": v}
    if o["amsgrad"]:
        states["max_exp_avg_sq"] = vmax
    return p, states


def fail(message):
    print(f"fake_fuseopt: error: {message}", file=sys.stderr)
    sys.exit(1)


def assignments(pairs, known, convert, what):
    values = dict(known)
    for pair in pairs:
        name, eq, text = pair.partition("=")
        if not eq or name not in known:
            fail(f"unknown {what} '{name}' (known: {', '.join(known)})")
        values[name] = convert(text)
    return values


def boolean(text):
    if text not in ("true", "false"):
        fail(f"an option is true or false, not '{text}'")
    return text == "true"


def load_float32(path):
    try:
        array = np.load(path)
    except (OSError, ValueError) as error:
        fail(f"{path}: {error}")
    if array.dtype != np.float32:
        fail(f"{path}: dtype {array.dtype}, need float32")
    return array


def main(argv):
    parser = argparse.ArgumentParser(prog="fake_fuseopt")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("rule")
    run.add_argument("--param", required=True)
    run.add_argument("--grad", required=True)
    run.add_argument("--out", required=True)
    run.add_argument("--steps", type=int, default=1)
    run.add_argument("--set", action="append", default=[])
    run.add_argument("--option", action="append", default=[])
    run.add_argument("--backend", choices=("interp", "cpu", "cuda", "auto"), default="auto")
    args = parser.parse_args(argv)

    if args.rule not in HYPERS:
        fail(f"fake_fuseopt knows only {', '.join(HYPERS)}, not '{args.rule}'")
    hypers = assignments(args.set, HYPERS[args.rule], float, "hyper")
    options = assignments(args.option, OPTIONS[args.rule], boolean, "option")
    param = load_float32(args.param)
    grads = load_float32(args.grad)
    if grads.shape == param.shape:
        grads = np.broadcast_to(grads, (args.steps,) + param.shape)
    elif grads.shape != (args.steps,) + param.shape:
        fail(f"gradient shape {grads.shape} fits neither {param.shape} "
             f"nor {(args.steps,) + param.shape}")

    step = {"sgd": sgd, "adam": adam}[args.rule]
    p, states = step(param.astype(np.float64), grads.astype(np.float64), hypers, options)
    os.makedirs(args.out, exist_ok=True)
    np.save(os.path.join(args.out, "param.npy"), p.astype(np.float32))
    for name, value in states.items():
        np.save(os.path.join(args.out, name + ".npy"), value.astype(np.float32))
    with open(os.path.join(args.out, "scalars.json"), "w") as f:
        json.dump({"t": args.steps}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
