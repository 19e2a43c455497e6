"""fuseopt.torch.Optimizer: a torch.optim.Optimizer that steps with a fuseopt rule.

    optimizer = fuseopt.torch.Optimizer(model.parameters(), "adamw", lr=1e-3, betas=(0.9, 0.95))

replaces ``torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))``; param groups,
``step(closure)``, ``zero_grad``, ``state_dict``/``load_state_dict``, LR schedulers,
DistributedDataParallel and ZeroRedundancyOptimizer keep working (docs/python.md,
docs/distributed.md).

How it maps onto fuseopt: each param group gets its own C++ ``fuseopt.Optimizer`` over the
group's parameters, whose memory it reads and writes in place (no copies). The rule's hypers
are read from the group dict before every step (so a scheduler's new ``lr`` is used without
recompiling); its options (``amsgrad``, ``nesterov``...) are compile-time values that pick
the group's kernel. On the CPU, ``optimizer.state[p]`` holds tensors that share memory with
the C++ states.
"""

import math

import torch as _torch
from torch.optim import Optimizer as _TorchOptimizer

from . import _fuseopt as _core

__all__ = ["Optimizer", "TUPLE_HYPERS"]

#: torch packs these hypers in tuples; fuseopt's rules name the parts (rules/README.md).
TUPLE_HYPERS = {
    "betas": ("beta1", "beta2"),
    "etas": ("etaminus", "etaplus"),
    "step_sizes": ("step_size_min", "step_size_max"),
}
# Constructor settings that land in every param group (torch puts all keyword arguments in
# `defaults`, and ZeroRedundancyOptimizer passes its groups on with them): a group may carry
# them, but only with the optimizer's own value.
_SETTINGS = ("rule", "backend", "threads", "tuned")
# torch.optim's switches between implementations of the same update. fuseopt has one fused
# implementation; False/None are accepted so that code written for torch.optim runs.
_TORCH_SWITCHES = ("foreach", "fused")
_TORCH_UNSUPPORTED = ("capturable", "differentiable")
# Keys other code adds to param groups (LR schedulers: initial_lr, max_lr...); they pass
# through untouched.
_FOREIGN = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


def _fail(message):
    raise _core.UserError("fuseopt.torch.Optimizer: " + message)


class _Group:
    """The C++ optimizer of one param group and what it knows about the group's tensors."""

    def __init__(self, owner, group):
        self.params = list(group["params"])
        self.options = {name: group[name] for name in owner._option_defaults}
        devices = {p.device for p in self.params}
        if len(devices) > 1:
            _fail(f"a param group mixes devices ({', '.join(sorted(map(str, devices)))}); "
                  "put the parameters of each device in their own group")
        device = next(iter(devices)) if devices else _torch.device("cpu")
        backend = owner._backend
        if backend is None:
            backend = "cuda" if device.type == "cuda" else "cpu"
        settings = dict(backend=backend, options=self.options, tuned=owner._tuned,
                        size_hint=sum(p.numel() for p in self.params),
                        tensor_count=max(1, len(self.params)),
                        clip_grad_norm=owner._clip_grad_norm)
        if owner._rule_name in _core.rules():
            self.kernel = _core.compile(owner._rule_name, **settings)
        else:
            # A rule file compiles from the text read when the optimizer was made, so every
            # group (and a later load_state_dict) uses the same rule.
            self.kernel = _core.compile_text(owner._rule.source, name=owner._rule_name,
                                             **settings)
        if self.kernel.device_memory != (device.type == "cuda"):
            where = "CUDA device memory" if self.kernel.device_memory else "host memory"
            _fail(f"backend '{self.kernel.backend}' steps tensors in {where}, but the group's "
                  f"parameters are on {device}")
        if self.kernel.device_memory:
            ordinal = _core.cuda_device_ordinal()
            if device.index is not None and device.index != ordinal:
                _fail(f"the group's parameters are on {device}, but fuseopt's cuda backend "
                      f"runs on cuda:{ordinal} (choose it with FUSEOPT_CUDA_DEVICE)")
        self.device = device
        self.core = _core.Optimizer(self.kernel, owner._hypers_of(group), owner._threads)
        self.hypers = dict(self.core.hypers)
        self.state_names = list(self.core.state_names)
        self.scalar_names = list(self.core.scalar_names)
        # Until a parameter has a gradient, its tensor points at the parameter twice and is
        # disabled: a disabled tensor's memory is never touched.
        self.addresses = []
        for p in self.params:
            index = self.core._add_tensor_address(p.data_ptr(), p.data_ptr(), p.numel())
            self.core.set_enabled(index, False)
            self.addresses.append(None)
        self.enabled = [False] * len(self.params)
        # The state dict installed for each parameter (None before its first step); another
        # object in optimizer.state[p] means someone assigned state, which the next step
        # imports (ZeroRedundancyOptimizer.load_state_dict does that).
        self.entries = [None] * len(self.params)


class Optimizer(_TorchOptimizer):
    """A ``torch.optim.Optimizer`` that steps with a fuseopt rule.

    Args:
        params: parameters or param groups, as for any torch optimizer. float32, contiguous,
            dense, on the CPU (or a CUDA device with the cuda backend).
        rule: a built-in rule name (``fuseopt.rules()``) or the path of a ``.opt`` file.
        backend: ``"cpu"``, ``"interp"`` or ``"cuda"``; default: ``"cuda"`` for parameters on
            a CUDA device, else ``"cpu"``.
        threads: threads per step on the CPU (0: every core).
        tuned: use this machine's tuned schedules (``fuseopt tune``), where there are any.
        max_grad_norm: clip the gradients to this global norm inside the step, as
            ``torch.nn.utils.clip_grad_norm_`` would before it (a hyper of every group: a
            scheduler may change it). The norm is each param group's on this process: the
            whole model's with one group and DDP, not with sharded optimizers
            (docs/distributed.md). ``last_grad_norm()`` returns it.
        **hypers: the rule's hypers (``lr``, ``weight_decay``...; torch's tuples ``betas``,
            ``etas`` and ``step_sizes`` or their parts ``beta1``, ``beta2``...) and options
            (``amsgrad=True``...). Unknown names are an error.

    Differences from torch.optim: options are fixed per param group once it is added (a
    group with other options compiles another kernel); ``state[p]["step"]`` and scalar
    states are brought up to date by ``state_dict()``; with the cuda backend ``state[p]``
    holds copies made by ``state_dict()``.
    """

    def __init__(self, params, rule, *, backend=None, threads=0, tuned=True, max_grad_norm=None,
                 **hypers):
        if not isinstance(rule, str):
            _fail(f"rule must be a rule name or a path, not {type(rule).__name__}")
        if backend is not None and backend not in ("cpu", "interp", "cuda"):
            _fail(f"backend must be 'cpu', 'interp' or 'cuda', not {backend!r}")
        self._rule_name = rule
        self._backend = backend
        self._threads = int(threads)
        self._tuned = bool(tuned)
        self._rule = _core.Rule(rule)  # RuleError with the diagnostics when it has errors
        self._hyper_defaults = dict(self._rule.hypers)
        # Clipping compiles the rule with the group-wide gradient transform and adds its hyper
        # (docs/mixed-precision.md).
        self._clip_grad_norm = max_grad_norm is not None
        if self._clip_grad_norm:
            self._hyper_defaults["max_grad_norm"] = self._number("max_grad_norm", max_grad_norm)
        self._option_defaults = dict(self._rule.options)
        # torch's tuple form where the rule has every part.
        self._tuples = {key: parts for key, parts in TUPLE_HYPERS.items()
                        if all(part in self._hyper_defaults for part in parts)}
        self._part_of = {part: (key, i) for key, parts in self._tuples.items()
                         for i, part in enumerate(parts)}
        defaults = {}
        for name, value in self._hyper_defaults.items():
            if name in self._part_of:
                key, _ = self._part_of[name]
                defaults[key] = tuple(self._hyper_defaults[p] for p in self._tuples[key])
            else:
                defaults[name] = value
        defaults.update(self._option_defaults)
        defaults.update(self._normalize(dict(hypers), defaults, "the constructor"))
        self._groups = []
        super().__init__(params, defaults)

    # ---- Param groups ----------------------------------------------------------------------

    def _normalize(self, values, base, where, strict=True):
        """Checks the hypers and options of `values` (a group or the constructor's keywords)
        and returns them in the group's spelling: tuples folded, floats, bools. Unknown keys
        are an error when `strict`, else left out."""
        out = {}
        settings = {"rule": self._rule_name, "backend": self._backend,
                    "threads": self._threads, "tuned": self._tuned}
        for key, value in values.items():
            if key == "params":
                continue
            if key in _SETTINGS:
                if key in ("rule", "backend") and value != settings[key]:
                    _fail(f"{where} asks for {key} {value!r}, but this optimizer has "
                          f"{settings[key]!r}; use another optimizer for it")
                continue
            if key in _TORCH_SWITCHES or key in _FOREIGN:
                continue
            if key in _TORCH_UNSUPPORTED:
                if value:
                    _fail(f"{key}=True is not supported (fuseopt steps outside autograd "
                          "and CUDA graphs)")
                continue
            if key in self._tuples:
                parts = self._tuples[key]
                try:
                    numbers = tuple(float(v) for v in value)
                except TypeError:
                    _fail(f"{key} must be a tuple of {len(parts)} numbers, not {value!r}")
                if len(numbers) != len(parts):
                    _fail(f"{key} must be a tuple of {len(parts)} numbers, not {value!r}")
                out[key] = numbers
            elif key in self._part_of:
                tuple_key, i = self._part_of[key]
                current = list(out.get(tuple_key, values.get(tuple_key, base.get(tuple_key))))
                current[i] = self._number(key, value)
                out[tuple_key] = tuple(float(v) for v in current)
            elif key in self._hyper_defaults:
                out[key] = self._number(key, value)
            elif key in self._option_defaults:
                default = self._option_defaults[key]
                if isinstance(default, bool):
                    if not isinstance(value, (bool, int)) or value not in (0, 1):
                        _fail(f"option '{key}' takes True or False, not {value!r}")
                    out[key] = bool(value)
                else:
                    if isinstance(value, bool) or not isinstance(value, int):
                        _fail(f"option '{key}' takes an int, not {value!r}")
                    out[key] = value
            elif strict:
                hyper_names = ", ".join(self._tuple_spelling()) or "none"
                option_names = ", ".join(self._option_defaults) or "none"
                _fail(f"rule '{self._rule.name}' has no hyper or option '{key}' (in {where}); "
                      f"hypers: {hyper_names}; options: {option_names}")
        return out

    def _tuple_spelling(self):
        names = []
        for name in self._hyper_defaults:
            if name in self._part_of:
                key = self._part_of[name][0]
                if key not in names:
                    names.append(key)
            names.append(name)
        return names

    @staticmethod
    def _number(key, value):
        if isinstance(value, bool):
            _fail(f"hyper '{key}' takes a number, not {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            _fail(f"hyper '{key}' takes a number, not {value!r}")
        if math.isnan(number):
            _fail(f"hyper '{key}' is NaN")
        return number

    def _hypers_of(self, group):
        """The rule's hyper values from a group dict: a part key (beta1) a caller set wins
        over the tuple (betas)."""
        hypers = {}
        for name in self._hyper_defaults:
            if name in group:
                hypers[name] = float(group[name])
            elif name in self._part_of:
                key, i = self._part_of[name]
                hypers[name] = float(group[key][i])
            else:
                hypers[name] = float(group[name])  # KeyError: torch always fills defaults
        return hypers

    def add_param_group(self, param_group):
        """Adds a param group (torch.optim.Optimizer.add_param_group) and compiles its
        kernel; the group's hypers and options override the optimizer's defaults."""
        if not isinstance(param_group, dict):
            _fail(f"a param group must be a dict, not {type(param_group).__name__}")
        group = dict(param_group)
        normalized = self._normalize(group, self.defaults,
                                     f"param group {len(self.param_groups)}")
        for key in list(group):
            if key != "params" and (key in self._part_of or key in _SETTINGS
                                    or key in _TORCH_SWITCHES or key in _TORCH_UNSUPPORTED):
                del group[key]
        group.update(normalized)
        params = group["params"]
        if isinstance(params, _torch.Tensor):
            params = [params]
        else:
            params = list(params)
        group["params"] = params
        where = f"param group {len(self.param_groups)}"
        for i, p in enumerate(params):
            self._check_param(p, f"parameter {i} of {where}")
        super().add_param_group(group)
        self._groups.append(_Group(self, self.param_groups[-1]))

    @staticmethod
    def _check_param(p, where):
        if not isinstance(p, _torch.Tensor):
            _fail(f"{where} is a {type(p).__name__}, not a torch.Tensor")
        if p.layout != _torch.strided:
            _fail(f"{where} is {p.layout}; fuseopt steps dense tensors only")
        if p.dtype != _torch.float32:
            _fail(f"{where} is {p.dtype}; fuseopt steps float32 parameters only")
        if not p.is_contiguous():
            _fail(f"{where} is not contiguous; fuseopt steps parameter memory in place and "
                  "needs it contiguous")
        if p.device.type not in ("cpu", "cuda"):
            _fail(f"{where} is on {p.device}; fuseopt takes CPU or CUDA tensors")
        if p.numel() == 0:
            _fail(f"{where} is empty")

    # ---- Stepping --------------------------------------------------------------------------

    def last_grad_norm(self):
        """The global gradient norm (before clipping) each param group saw at its last step,
        in group order; needs ``max_grad_norm``."""
        if not self._clip_grad_norm:
            _fail("last_grad_norm() needs an optimizer made with max_grad_norm")
        return [runtime.core.last_grad_norm() for runtime in self._groups]

    @_torch.no_grad()
    def step(self, closure=None):
        """One step for every parameter that has a gradient. ``closure`` re-evaluates the
        model and returns the loss (run with gradients enabled)."""
        loss = None
        if closure is not None:
            with _torch.enable_grad():
                loss = closure()
        if len(self._groups) != len(self.param_groups):
            _fail("param_groups was changed behind the optimizer's back; use "
                  "add_param_group() or load_state_dict()")
        for number, (group, runtime) in enumerate(zip(self.param_groups, self._groups)):
            self._step_group(number, group, runtime)
        return loss

    def _step_group(self, number, group, runtime):
        for name, compiled in runtime.options.items():
            if group.get(name, compiled) != compiled:
                _fail(f"option '{name}' of param group {number} changed from {compiled!r} to "
                      f"{group[name]!r}; options are compile-time values: add a param group or "
                      "make a new optimizer for other options")
        core = runtime.core
        for name, value in self._hypers_of(group).items():
            if runtime.hypers.get(name) != value:
                core.set_hyper(name, value)
                runtime.hypers[name] = value
        stepped = []
        for index, p in enumerate(runtime.params):
            entry = runtime.entries[index]
            if entry is not None and self.state.get(p) is not entry:
                self._import_state(runtime, index, p)
            grad = p.grad
            if grad is None:
                if runtime.enabled[index]:
                    core.set_enabled(index, False)
                    runtime.enabled[index] = False
                continue
            if p.device != runtime.device:
                _fail(f"parameter {index} of param group {number} moved from "
                      f"{runtime.device} to {p.device}; make the optimizer after moving the "
                      "model")
            self._check_grad(p, grad, number, index)
            addresses = (p.data_ptr(), grad.data_ptr())
            if addresses != runtime.addresses[index]:
                core._set_addresses(index, addresses[0], addresses[1])
                runtime.addresses[index] = addresses
            if not runtime.enabled[index]:
                core.set_enabled(index, True)
                runtime.enabled[index] = True
            stepped.append(index)
        if not stepped:
            return
        side_stream = False
        if runtime.device.type == "cuda":
            # The kernel runs on the device's legacy default stream, which orders itself with
            # torch's default stream. Work torch queued on another stream (the gradients)
            # must be done first, and what torch queues there next must wait for the step.
            stream = _torch.cuda.current_stream(runtime.device)
            side_stream = stream != _torch.cuda.default_stream(runtime.device)
            if side_stream:
                stream.synchronize()
        core.step()
        if side_stream:
            core.synchronize()
        for index in stepped:
            if runtime.entries[index] is None:
                self._install_state(runtime, index, runtime.params[index])

    @staticmethod
    def _check_grad(p, grad, group, index):
        # The common case first, with no message built: this runs for every parameter at
        # every step.
        if (grad.layout == _torch.strided and grad.dtype == _torch.float32
                and p.dtype == _torch.float32 and grad.shape == p.shape
                and grad.device == p.device and grad.is_contiguous() and p.is_contiguous()):
            return
        where = f"parameter {index} of param group {group}"
        if grad.is_sparse or grad.layout != _torch.strided:
            _fail(f"{where} has a sparse gradient; fuseopt steps dense gradients only "
                  "(torch.optim.SparseAdam handles sparse ones)")
        if grad.dtype != _torch.float32:
            _fail(f"the gradient of {where} is {grad.dtype}; fuseopt takes float32")
        if grad.device != p.device:
            _fail(f"the gradient of {where} is on {grad.device}, the parameter on {p.device}")
        if grad.shape != p.shape:
            _fail(f"the gradient of {where} has shape {tuple(grad.shape)}, the parameter "
                  f"{tuple(p.shape)}")
        if not grad.is_contiguous():
            _fail(f"the gradient of {where} is not contiguous")
        if p.dtype != _torch.float32 or not p.is_contiguous():
            _fail(f"{where} is no longer a contiguous float32 tensor (its .data was replaced)")

    # ---- State -----------------------------------------------------------------------------

    def _install_state(self, runtime, index, p):
        """optimizer.state[p] for a parameter fuseopt has stepped: tensors that share the C++
        states' memory on the CPU, copies on a device."""
        core = runtime.core
        entry = {"step": _torch.tensor(float(core.step_count(index)))}
        for name in runtime.state_names:
            if runtime.kernel.device_memory:
                entry[name] = _torch.from_numpy(core.read_state(index, name)).view_as(p).to(p.device)
            else:
                entry[name] = _torch.from_numpy(core.state(index, name)).view_as(p)
        for name in runtime.scalar_names:
            # A Python float keeps the double exactly (torch's load_state_dict would cast a
            # tensor to the parameter's float32).
            entry[name] = core.scalar(index, name)
        self.state[p] = entry
        runtime.entries[index] = entry

    def _refresh_state(self):
        """Brings what is not shared memory up to date: steps, scalars, device copies."""
        for runtime in self._groups:
            core = runtime.core
            for index, p in enumerate(runtime.params):
                entry = runtime.entries[index]
                if entry is not None and self.state.get(p) is not entry:
                    self._import_state(runtime, index, p)
                    entry = runtime.entries[index]
                if entry is None:
                    continue
                entry["step"] = _torch.tensor(float(core.step_count(index)))
                for name in runtime.scalar_names:
                    entry[name] = core.scalar(index, name)
                if runtime.kernel.device_memory:
                    for name in runtime.state_names:
                        values = _torch.from_numpy(core.read_state(index, name))
                        entry[name] = values.view_as(p).to(p.device)

    def _import_state(self, runtime, index, p):
        """Copies optimizer.state[p] (set by load_state_dict or by a caller) into the C++
        optimizer, then installs the shared entry in its place."""
        core = runtime.core
        values = self.state.get(p, {})
        if not values:
            core.set_step_count(index, 0)
            runtime.entries[index] = None
            self.state.pop(p, None)
            return
        where = f"the state of a parameter of shape {tuple(p.shape)}"
        steps = None
        for name, value in values.items():
            if name == "step":
                steps = int(value.item() if isinstance(value, _torch.Tensor) else value)
                if steps < 0:
                    _fail(f"{where} has step {steps}")
            elif name in runtime.state_names:
                if value is None:  # torch.optim.SGD keeps momentum_buffer=None without momentum
                    continue
                tensor = value.detach() if isinstance(value, _torch.Tensor) else _torch.as_tensor(value)
                if tensor.numel() != p.numel():
                    _fail(f"{where}: state '{name}' has {tensor.numel()} elements, "
                          f"the parameter {p.numel()}")
                host = tensor.to(device="cpu", dtype=_torch.float32).contiguous().reshape(-1)
                core.write_state(index, name, host.numpy())
            elif name in runtime.scalar_names:
                core.set_scalar(index, name, float(value))
            else:
                _fail(f"{where} has '{name}', which rule '{self._rule.name}' with these options "
                      f"does not keep (states: {', '.join(runtime.state_names) or 'none'}; "
                      f"scalars: {', '.join(runtime.scalar_names) or 'none'}); was it saved by "
                      "another optimizer?")
        # torch.optim.SGD keeps no step: a parameter with state has taken at least one.
        core.set_step_count(index, steps if steps is not None else 1)
        self._install_state(runtime, index, p)

    def state_dict(self):
        """torch's state dict: per parameter the rule's states under their names (PyTorch's
        names, rules/README.md), scalar states, and ``step``; and the param groups."""
        self._refresh_state()
        return super().state_dict()

    def load_state_dict(self, state_dict):
        """Loads a state dict from this class (or from the torch.optim class of the same rule,
        whose state names fuseopt shares). Each group's kernel is rebuilt for the loaded
        options; the optimizer then continues bit-identically to the one that was saved."""
        super().load_state_dict(state_dict)
        self._groups = []
        for group in self.param_groups:
            group.update(self._normalize(dict(group), self.defaults, "the loaded state dict",
                                         strict=False))
            for key in [k for k in group if k in self._part_of]:
                del group[key]
            self._groups.append(_Group(self, group))
        for runtime in self._groups:
            for index, p in enumerate(runtime.params):
                if self.state.get(p):
                    self._import_state(runtime, index, p)
                else:
                    self.state.pop(p, None)

    def __repr__(self):
        lines = [f"fuseopt.torch.Optimizer {self._rule.name} ("]
        for i, group in enumerate(self.param_groups):
            kernel = self._groups[i].kernel.name if i < len(self._groups) else "?"
            lines.append(f"Parameter Group {i} ({kernel})")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
