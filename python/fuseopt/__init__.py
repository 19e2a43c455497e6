"""fuseopt: an auto-tuning compiler for deep-learning optimizer update rules.

The C++ API for Python (docs/python.md):

    import fuseopt
    kernel = fuseopt.compile("adam", backend="cpu", options={"amsgrad": True})
    opt = fuseopt.Optimizer(kernel, {"lr": 1e-3})
    opt.add_tensor(param, grad)        # float32 NumPy arrays or torch tensors, no copies
    opt.step()

and for PyTorch, ``fuseopt.torch.Optimizer(model.parameters(), "adamw", lr=1e-3)`` (imported
on first use of ``fuseopt.torch``, so that this package works without torch).

Errors: ``UserError`` (a ``ValueError``; ``RuleError`` for a rule with errors, with
``.diagnostics``), ``EnvironmentError`` (a ``RuntimeError``: no GPU, driver, NVRTC...) and
``InternalError`` (a bug in fuseopt), all subclasses of ``fuseopt.Error``. Their messages are
the C++ library's.
"""

from ._fuseopt import (  # noqa: F401
    CheckResult,
    Diagnostic,
    EnvironmentError,
    Error,
    InternalError,
    Kernel,
    Optimizer,
    Pack,
    Rule,
    RuleError,
    UserError,
    __version__,
    check,
    check_text,
    clear_compiled_kernels,
    compile,
    compile_text,
    cuda_device_ordinal,
    cuda_unavailable_reason,
    resolve_backend,
    rule_source,
    rules,
    tune,
)

__all__ = [
    "CheckResult", "Diagnostic", "EnvironmentError", "Error", "InternalError", "Kernel",
    "Optimizer", "Pack", "Rule", "RuleError", "UserError", "__version__", "check",
    "check_text", "clear_compiled_kernels", "compile", "compile_text", "cuda_device_ordinal",
    "cuda_unavailable_reason", "make_optimizer", "resolve_backend", "rule_source", "rules",
    "tune",
]


def make_optimizer(rule, *, backend="auto", options=None, threads=0, storage=None,
                   loss_scaling=False, clip_grad_norm=False, **hypers):
    """compile() and Optimizer() in one call: ``make_optimizer("adam", lr=1e-3)``.

    ``rule`` is a built-in name or a ``.opt`` path; ``options`` the option values
    (``{"amsgrad": True}``); ``storage``, ``loss_scaling`` and ``clip_grad_norm`` as compile()
    takes them (docs/mixed-precision.md); the keywords are hypers."""
    kernel = compile(rule, backend=backend, options=options or {}, storage=storage or {},
                     loss_scaling=loss_scaling, clip_grad_norm=clip_grad_norm)
    return Optimizer(kernel, {name: float(value) for name, value in hypers.items()}, threads)


def __getattr__(name):
    # fuseopt.torch imports torch, which takes a while and may be absent: load it on use.
    if name == "torch":
        import importlib
        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'fuseopt' has no attribute '{name}'")
