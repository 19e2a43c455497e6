#!/usr/bin/env python3
"""Train a small MLP on scikit-learn's digits with torch Adam, fuseopt adam and fuseopt adamomentum.

The digits data (1797 8x8 images, 10 classes) ships inside scikit-learn, so nothing is
downloaded. The script splits it 80/20 into a training and a held-out test set (stratified,
fixed seed), standardises the pixels with the training set's mean and deviation, and trains
a 64-64-10 MLP (ReLU, cross-entropy) three times from the same initial weights and the same
batch order:

    torch.optim.Adam                                 (foreach=False where torch has it)
    fuseopt.torch.Optimizer(params, "adam")          the built-in rule, same hypers
    fuseopt.torch.Optimizer(params, "adamomentum")   AdaMomentum, same lr and betas

After every epoch it prints the loss and accuracy on the training and on the test set, and at
the end the mean and median time of optimizer.step() alone (the forward and backward pass are
not counted; the first step, which allocates the states, is reported apart, and so is the
construction of the optimizer, where fuseopt compiles its kernel or finds it in its cache),
the largest difference between the parameters trained by torch Adam and by fuseopt adam (the
same arithmetic, so it stays at float32 rounding), and writes a PNG of the loss curves
(matplotlib, Agg backend: no display needed), which it reads back to check.

    /usr/bin/python3 examples/python/train_digits.py                 # 30 epochs, ~1 minute
    /usr/bin/python3 examples/python/train_digits.py --quick --plot /tmp/digits.png

Needs torch, numpy, scikit-learn, matplotlib and the fuseopt package (pip install ., or
PYTHONPATH pointing at the build tree's python/ folder). Exit codes: 0 done; 1 failure (no
fuseopt, a training loss that did not fall by 10%, no PNG); 2 usage error; 77 when torch,
numpy, scikit-learn or matplotlib is missing (CTest's skip code).
"""

import argparse
import copy
import os
import statistics
import sys
import time

SKIP = 77


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per optimizer (default 30, or 3 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 3 epochs (unless --epochs is given)")
    parser.add_argument("--plot", default="loss_curves.png",
                        help="where to write the PNG of the loss curves (default ./loss_curves.png)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch.set_num_threads and fuseopt's threads per step (default 2)")
    parser.add_argument("--backend", default="cpu", help="fuseopt backend (default cpu)")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 3 if args.quick else 30
    if args.epochs < 1 or args.batch_size < 1 or args.threads < 1 or args.lr <= 0:
        parser.error("--epochs, --batch-size and --threads must be >= 1 and --lr > 0")
    return args


def import_dependencies():
    """Imports torch, numpy, sklearn and matplotlib; exits 77 naming the first one missing."""
    modules = {}
    for name in ("torch", "numpy", "sklearn", "matplotlib"):
        try:
            modules[name] = __import__(name)
        except ImportError as e:
            print(f"train_digits.py: skipped: {name} is not installed ({e})", file=sys.stderr)
            sys.exit(SKIP)
    modules["matplotlib"].use("Agg")  # before pyplot is imported: no display needed
    try:
        import fuseopt
        import fuseopt.torch  # noqa: F401  (the submodule is what the script uses)
    except ImportError as e:
        # Not a skip: whoever runs this example wants fuseopt, and a missing build is an error.
        sys.exit(f"train_digits.py: error: cannot import fuseopt ({e}); install it with "
                 "`pip install .` or set PYTHONPATH to the build tree's python/ folder")
    modules["fuseopt"] = fuseopt
    return modules


def load_data(m, seed):
    """The digits split 80/20, standardised by the training set; float32 torch tensors."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    torch, np = m["torch"], m["numpy"]
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0  # pixels that are always 0 in the training set stay 0
    def prep(a):
        return torch.from_numpy(((a - mean) / std).astype(np.float32))
    return (prep(x_train), torch.from_numpy(y_train).long(),
            prep(x_test), torch.from_numpy(y_test).long())


def make_model(torch, seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def make_optimizers(m, lr, backend, threads):
    """name -> a function that builds that optimizer over a model's parameters."""
    torch, fuseopt = m["torch"], m["fuseopt"]
    betas = (0.9, 0.999)

    def torch_adam(params):
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, foreach=False)
        except TypeError:  # a torch without the foreach argument
            return torch.optim.Adam(params, lr=lr, betas=betas)

    def fuseopt_rule(rule):
        return lambda params: fuseopt.torch.Optimizer(params, rule, lr=lr, betas=betas,
                                                      backend=backend, threads=threads)

    return {
        "torch Adam": torch_adam,
        "fuseopt adam": fuseopt_rule("adam"),
        "fuseopt adamomentum": fuseopt_rule("adamomentum"),
    }


def evaluate(torch, model, x, y):
    with torch.no_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y).item()
        accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy


def train(m, name, build_optimizer, initial_model, data, args):
    """Trains a copy of initial_model; returns the per-epoch history, step times and the model."""
    torch = m["torch"]
    x_train, y_train, x_test, y_test = data
    model = copy.deepcopy(initial_model)
    begin = time.perf_counter()
    optimizer = build_optimizer(model.parameters())  # fuseopt compiles or loads its kernel here
    setup_time = time.perf_counter() - begin
    # The same batch order for every optimizer: a generator seeded alike for each run.
    order = torch.Generator().manual_seed(args.seed)
    history = {"train_loss": [], "train_acc": [], "test_loss": [], "test_acc": []}

    def record(epoch):
        model.eval()
        train_loss, train_acc = evaluate(torch, model, x_train, y_train)
        test_loss, test_acc = evaluate(torch, model, x_test, y_test)
        for key, value in zip(history, (train_loss, train_acc, test_loss, test_acc)):
            history[key].append(value)
        print(f"{name:<20} epoch {epoch:3d}  train loss {train_loss:.4f} acc {train_acc:.4f}"
              f"  test loss {test_loss:.4f} acc {test_acc:.4f}", flush=True)

    record(0)  # the initial model, the same for every optimizer
    step_times = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        permutation = torch.randperm(len(x_train), generator=order)
        for start in range(0, len(x_train), args.batch_size):
            batch = permutation[start:start + args.batch_size]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            begin = time.perf_counter()
            optimizer.step()
            step_times.append(time.perf_counter() - begin)
        record(epoch)
    return history, (setup_time, step_times), model


def save_plot(histories, path):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    # torch Adam and fuseopt adam do the same arithmetic and draw one curve: the dashes and
    # the smaller markers let both show.
    styles = [dict(linestyle="-", marker="o", markersize=6), dict(linestyle="--", marker=".",
              markersize=4), dict(linestyle="-", marker="s", markersize=3)]
    for (name, history), style in zip(histories.items(), styles):
        epochs = range(len(history["train_loss"]))  # epoch 0: the initial model
        axes[0].plot(epochs, history["train_loss"], label=name, **style)
        axes[1].plot(epochs, history["test_loss"], label=name, **style)
    for axis, title in zip(axes, ("training set", "held-out test set")):
        axis.set_title(f"digits, 64-64-10 MLP: {title}")
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.set_yscale("log")
        axis.grid(True, alpha=0.3)
        axis.legend()
    axes[0].set_ylabel("cross-entropy loss")
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # A stale file from an earlier run must not pass for this run's plot.
    if os.path.exists(path):
        os.remove(path)
    figure.savefig(path, dpi=100, format="png")
    plt.close(figure)
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            sys.exit(f"train_digits.py: error: {path} was not written as a PNG")


def main(argv):
    args = parse_args(argv)
    m = import_dependencies()
    torch = m["torch"]
    torch.set_num_threads(args.threads)
    data = load_data(m, args.seed)
    initial_model = make_model(torch, args.seed)
    print(f"digits: {len(data[0])} training and {len(data[2])} test images; MLP 64-64-10; "
          f"batch {args.batch_size}, lr {args.lr}, {args.epochs} epochs; torch {torch.__version__}, "
          f"fuseopt {getattr(m['fuseopt'], '__version__', '?')}, {args.threads} threads, "
          f"fuseopt backend {args.backend}", flush=True)

    histories, timings, models = {}, {}, {}
    for name, build in make_optimizers(m, args.lr, args.backend, args.threads).items():
        histories[name], timings[name], models[name] = train(
            m, name, build, initial_model, data, args)

    print()
    print("| optimizer | final train loss | final test loss | test accuracy "
          "| step mean (us) | step median (us) | first step (ms) | construction (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, history in histories.items():
        setup_time, times = timings[name]
        steady = times[1:] or times  # the first step allocates the states: shown apart
        print(f"| {name} | {history['train_loss'][-1]:.4f} | {history['test_loss'][-1]:.4f} "
              f"| {history['test_acc'][-1]:.4f} | {statistics.mean(steady) * 1e6:.1f} "
              f"| {statistics.median(steady) * 1e6:.1f} | {times[0] * 1e3:.2f} "
              f"| {setup_time * 1e3:.1f} |")

    with torch.no_grad():
        difference = max(
            (a - b).abs().max().item()
            for a, b in zip(models["torch Adam"].parameters(), models["fuseopt adam"].parameters()))
    print(f"\nlargest |torch Adam - fuseopt adam| over all parameters after training: "
          f"{difference:.3g}")
    try:
        save_plot(histories, args.plot)
    except OSError as e:
        sys.exit(f"train_digits.py: error: cannot write the plot {args.plot}: {e}")
    print(f"loss curves: {args.plot}")
    # What a smoke run can check without pinning numbers: every optimizer trained the model.
    # One epoch of any of the three at lr 1e-3 takes the training loss from about 2.3 (chance
    # over 10 classes) to about 1.5, so a loss that has not fallen by 10% (or is NaN) means
    # the steps did not do their work.
    failed = [name for name, history in histories.items()
              if not history["train_loss"][-1] < 0.9 * history["train_loss"][0]]
    if failed:
        sys.exit(f"train_digits.py: error: the training loss did not fall by 10% with "
                 f"{', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
