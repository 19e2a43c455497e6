#!/usr/bin/env python3
"""Train a bfloat16 model with fuseopt: plain bf16 parameters, stochastic rounding, and an f32
master copy (AdamW's master_weights option), against float32 torch AdamW.

The task is a linear regression y = X w* (512 features, fixed seed, nothing downloaded)
whose weights start near 1, where bfloat16's spacing is 2^-7: AdamW's updates at lr 1e-4 are
~50 times smaller, so round to nearest leaves bf16 parameters where they are. Three bf16
models from the same initial weights and batches show what fuseopt.torch offers:

    round to nearest          the parameter does not move: every update is rounded away
    stochastic_rounding=True  rounds up with the probability of the remainder: moves in
                              expectation, with noise
    master_weights=True       the update is computed from an f32 copy kept as the state
                              `master`, and the bf16 parameter is written rounded from it

and float32 torch.optim.AdamW is the reference. It prints the training loss of each every
few steps, then checks that the master-weight model follows the float32 reference (its loss
within 2% of it; its master stays near the reference's weights, apart only because its
gradients come from the rounded bf16 weights), that its bf16 parameter is exactly the master
rounded, and that round to nearest stayed where it started; it exits 1 when not.

    /usr/bin/python3 examples/python/bf16_master_weights.py [--steps 300] [--backend cpu]

Needs torch and the fuseopt package (pip install ., or PYTHONPATH at the build tree's python/
folder); exits 77 without torch (CTest's skip code). --backend interp runs the reference
interpreter (slower) where a backend does not store bf16.
"""

import argparse
import sys

try:
    import torch
except ImportError:
    print("skipped: needs torch")
    sys.exit(77)

import fuseopt.torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--backend", default="cpu")
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    features = 512
    x = torch.randn(4096, features, generator=generator)
    target_weights = 1.0 + 0.05 * torch.randn(features, generator=generator)
    y = x @ target_weights
    start = 1.0 + 0.05 * torch.randn(features, generator=generator)

    def make(dtype):
        return torch.nn.Parameter(start.clone().to(dtype))

    reference = make(torch.float32)
    models = {"round to nearest": make(torch.bfloat16),
              "stochastic rounding": make(torch.bfloat16),
              "master weights": make(torch.bfloat16)}
    common = dict(lr=args.lr, weight_decay=0.0, backend=args.backend)
    optimizers = {
        "round to nearest": fuseopt.torch.Optimizer([models["round to nearest"]], "adamw",
                                                    **common),
        "stochastic rounding": fuseopt.torch.Optimizer([models["stochastic rounding"]], "adamw",
                                                       stochastic_rounding=True,
                                                       rounding_seed=1, **common),
        "master weights": fuseopt.torch.Optimizer([models["master weights"]], "adamw",
                                                  master_weights=True, **common),
    }
    torch_adamw = torch.optim.AdamW([reference], lr=args.lr, weight_decay=0.0)

    def loss_of(w):
        return float(((x @ w.detach().float() - y) ** 2).mean())

    print(f"{'step':>5}  {'float32 torch':>14}" + "".join(f"  {name:>20}" for name in models))
    for step in range(1, args.steps + 1):
        batch = torch.randint(0, x.shape[0], (256,), generator=generator)
        xb, yb = x[batch], y[batch]
        for w, opt in [(reference, torch_adamw)] + [(models[n], optimizers[n]) for n in models]:
            opt.zero_grad()
            # the gradient in float32, then as the parameter's dtype (what autograd gives a
            # bf16 model)
            w32 = w.detach().float().requires_grad_()
            ((xb @ w32 - yb) ** 2).mean().backward()
            w.grad = w32.grad.to(w.dtype)
            opt.step()
        if step == 1 or step % max(1, args.steps // 6) == 0 or step == args.steps:
            print(f"{step:>5}  {loss_of(reference):>14.6f}"
                  + "".join(f"  {loss_of(w):>20.6f}" for w in models.values()))

    master = optimizers["master weights"].state[models["master weights"]]["master"]
    master_gap = float((master - reference.detach()).abs().max())
    rounded_ok = torch.equal(models["master weights"].detach(), master.to(torch.bfloat16))
    unmoved = torch.equal(models["round to nearest"].detach(), start.to(torch.bfloat16))
    reference_loss, master_loss = loss_of(reference), loss_of(models["master weights"])
    print(f"\nmaster vs float32 torch AdamW: largest difference {master_gap:.3g}; the bf16 "
          f"parameter is the master rounded: {rounded_ok}; round to nearest never moved: "
          f"{unmoved}")
    ok = (rounded_ok and unmoved and master_gap < 0.05
          and abs(master_loss - reference_loss) <= 0.02 * reference_loss)
    if not ok:
        print("FAILED: master weights should follow float32 AdamW and round to nearest "
              "should stay where it started")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
