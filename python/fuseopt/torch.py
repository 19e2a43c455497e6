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

Mixed precision (docs/mixed-precision.md): bfloat16 and float16 parameters are stepped in
their own memory by kernels that store param and grad in that type; a group holding several
dtypes is split into one C++ optimizer per dtype. ``state_dtype``, ``stochastic_rounding`` and
the rule option ``master_weights`` choose how states and parameters are stored and rounded.
GradScaler works through torch's fused-optimizer contract (``_step_supports_amp_scaling``):
the gradients are unscaled inside the kernel and a step with an inf or NaN is skipped for
every group.
"""

import math

from numpy import float32 as _np_float32

import torch as _torch
from torch.optim import Optimizer as _TorchOptimizer

from . import _fuseopt as _core

__all__ = ["Optimizer", "TUPLE_HYPERS", "STORAGE_OF_DTYPE"]

#: The parameter dtypes fuseopt steps and the storage type (CompileOptions::storage) each is
#: kept in.
STORAGE_OF_DTYPE = {
    _torch.float32: "f32",
    _torch.bfloat16: "bf16",
    _torch.float16: "f16",
}
_DTYPE_OF_STORAGE = {name: dtype for dtype, name in STORAGE_OF_DTYPE.items()}
# The rule option that keeps an f32 master copy of a bf16/f16 parameter (rules/adamw.opt);
# states that exist for it keep the type the rule gives them whatever state_dtype says.
_MASTER_WEIGHTS = "master_weights"

#: torch packs these hypers in tuples; fuseopt's rules name the parts (rules/README.md).
TUPLE_HYPERS = {
    "betas": ("beta1", "beta2"),
    "etas": ("etaminus", "etaplus"),
    "step_sizes": ("step_size_min", "step_size_max"),
}
# Constructor settings that land in every param group (torch puts all keyword arguments in
# `defaults`, and ZeroRedundancyOptimizer passes its groups on with them): a group may carry
# them, but only with the optimizer's own value.
_SETTINGS = ("rule", "backend", "threads", "tuned", "state_dtype", "stochastic_rounding",
             "loss_scaling")
# torch.optim's switches between implementations of the same update. fuseopt has one fused
# implementation; False/None are accepted so that code written for torch.optim runs.
_TORCH_SWITCHES = ("foreach", "fused")
_TORCH_UNSUPPORTED = ("capturable", "differentiable")
# Keys other code adds to param groups (LR schedulers: initial_lr, max_lr...); they pass
# through untouched.
_FOREIGN = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


def _fail(message):
    raise _core.UserError("fuseopt.torch.Optimizer: " + message)


class _Part:
    """One C++ optimizer: the parameters of one param group that share a dtype. Its kernel
    stores param and grad in that dtype (bf16/f16 memory is stepped in place)."""

    def __init__(self, owner, group, dtype, members, device):
        self.dtype = dtype
        self.members = members  # indices into the group's params, in order
        params = [group["params"][i] for i in members]
        settings = dict(backend=owner._backend_for(device), options=owner._options_of(group),
                        tuned=owner._tuned, size_hint=sum(p.numel() for p in params),
                        tensor_count=max(1, len(params)), clip_grad_norm=owner._clip_grad_norm,
                        loss_scaling=owner._loss_scaling,
                        storage=owner._storage_for(dtype, owner._options_of(group)))
        self.kernel = owner._compile(**settings)
        if self.kernel.device_memory != (device.type == "cuda"):
            where = "CUDA device memory" if self.kernel.device_memory else "host memory"
            _fail(f"backend '{self.kernel.backend}' steps tensors in {where}, but the group's "
                  f"parameters are on {device}")
        if self.kernel.device_memory:
            ordinal = _core.cuda_device_ordinal()
            if device.index is not None and device.index != ordinal:
                _fail(f"the group's parameters are on {device}, but fuseopt's cuda backend "
                      f"runs on cuda:{ordinal} (choose it with FUSEOPT_CUDA_DEVICE)")
        # The kernel's hypers are the rule's, plus grad_scale, max_grad_norm and rounding_seed
        # where loss scaling, clipping or a stochastic store added them: a part sets those
        # of the group's it has (an f32 part of a stochastic optimizer has no rounding_seed).
        self.core = _core.Optimizer(self.kernel, {}, owner._threads)
        names = set(self.core.hyper_names)
        for name, value in owner._hypers_of(group).items():
            if name in names:
                self.core.set_hyper(name, value)
        self.hypers = dict(self.core.hypers)
        self.state_names = list(self.core.state_names)
        self.scalar_names = list(self.core.scalar_names)
        # The torch dtype of each state as the kernel stores it.
        self.state_dtypes = {name: _DTYPE_OF_STORAGE[self.core.storage(name)]
                             for name in self.state_names}
        # Until a parameter has a gradient, its tensor points at the parameter twice and is
        # disabled: a disabled tensor's memory is never touched.
        for p in params:
            index = self.core._add_tensor_address(p.data_ptr(), p.data_ptr(), p.numel())
            self.core.set_enabled(index, False)


class _Group:
    """The C++ optimizers of one param group (one per parameter dtype) and what they know
    about the group's tensors."""

    def __init__(self, owner, group):
        self.params = list(group["params"])
        self.options = owner._options_of(group)
        devices = {p.device for p in self.params}
        if len(devices) > 1:
            _fail(f"a param group mixes devices ({', '.join(sorted(map(str, devices)))}); "
                  "put the parameters of each device in their own group")
        device = next(iter(devices)) if devices else _torch.device("cpu")
        self.device = device
        # One C++ optimizer per dtype, in the order the dtypes first appear.
        members = {}
        for i, p in enumerate(self.params):
            members.setdefault(p.dtype, []).append(i)
        if not members:
            members[_torch.float32] = []
        if len(members) > 1 and owner._clip_grad_norm:
            names = ", ".join(str(dtype).replace("torch.", "") for dtype in members)
            _fail(f"a param group mixes dtypes ({names}) and max_grad_norm is set: the group "
                  "would be clipped per dtype, not to its global norm. Put the parameters of "
                  "each dtype in their own group (each group is clipped to its own norm)")
        self.parts = [_Part(owner, group, dtype, indices, device)
                      for dtype, indices in members.items()]
        self.part_of = [None] * len(self.params)
        self.local = [0] * len(self.params)
        for part in self.parts:
            for local, i in enumerate(part.members):
                self.part_of[i] = part
                self.local[i] = local
        self.addresses = [None] * len(self.params)
        self.enabled = [False] * len(self.params)
        # The state dict installed for each parameter (None before its first step); another
        # object in optimizer.state[p] means someone assigned state, which the next step
        # imports (ZeroRedundancyOptimizer.load_state_dict does that).
        self.entries = [None] * len(self.params)

    @property
    def loss_scaling(self):
        return "grad_scale" in self.parts[0].hypers

    @property
    def core(self):
        """The C++ optimizer of a group of one dtype (tests and tools look at it)."""
        return self._only_part().core

    @property
    def kernel(self):
        return self._only_part().kernel

    def _only_part(self):
        if len(self.parts) != 1:
            raise AttributeError("this param group holds several dtypes: each has its own "
                                 "C++ optimizer in .parts")
        return self.parts[0]


class Optimizer(_TorchOptimizer):
    """A ``torch.optim.Optimizer`` that steps with a fuseopt rule.

    Args:
        params: parameters or param groups, as for any torch optimizer: float32, bfloat16 or
            float16, contiguous, dense, on the CPU (or a CUDA device with the cuda backend).
            bfloat16/float16 parameters are stepped in place by kernels that store param and
            grad in that type; a group holding several dtypes gets one C++ optimizer per dtype.
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
        state_dtype: how the states are stored: ``None`` (as the rule declares them, float32
            by default), a dtype (``torch.bfloat16``, ``torch.float16``, ``torch.float32``) for
            every state but the f32 master copy of ``master_weights``, or a dict
            ``{state: dtype or storage string ("bf16 stochastic")}``.
        stochastic_rounding: round bfloat16/float16 parameters stochastically when they are
            stored (float32 parameters are not rounded). The stream is seeded by the hyper
            ``rounding_seed`` (default 0, a group key): the same seed gives the same bits.
        loss_scaling: compile the kernels with loss scaling from the start; without it they
            are rebuilt (states kept) at the first step that gets a gradient scale.
        **hypers: the rule's hypers (``lr``, ``weight_decay``...; torch's tuples ``betas``,
            ``etas`` and ``step_sizes`` or their parts ``beta1``, ``beta2``...) and options
            (``amsgrad=True``, ``master_weights=True``...). Unknown names are an error.

    Differences from torch.optim: options are fixed per param group once it is added (a
    group with other options compiles another kernel); ``state[p]["step"]`` and scalar
    states are brought up to date by ``state_dict()``; with the cuda backend ``state[p]``
    holds copies made by ``state_dict()``.
    """

    # GradScaler calls step() with the scale (torch >= 2: the attributes grad_scale and
    # found_inf; torch 1.13: step(grad_scaler=...)) instead of unscaling the gradients itself.
    _step_supports_amp_scaling = True

    def __init__(self, params, rule, *, backend=None, threads=0, tuned=True, max_grad_norm=None,
                 state_dtype=None, stochastic_rounding=False, loss_scaling=False, **hypers):
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
        self._state_dtype = self._check_state_dtype(state_dtype)
        self._stochastic = bool(stochastic_rounding)
        self._loss_scaling = bool(loss_scaling)
        # A stochastic store adds the kernel hyper rounding_seed; it is a group key like the
        # rule's hypers (an integer below 2^53).
        stochastic_states = isinstance(self._state_dtype, dict) and any(
            isinstance(v, str) and v.endswith(" stochastic") for v in self._state_dtype.values())
        if self._stochastic or stochastic_states:
            self._hyper_defaults["rounding_seed"] = 0.0
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
        self._buffers_of_options = {}
        self._skip_pending = None  # the C++ optimizer whose step's outcome is still on the device
        self.last_step_skipped = False
        super().__init__(params, defaults)

    @property
    def last_step_skipped(self):
        """Whether the last step() was skipped (loss scaling found an inf or NaN, or
        found_inf was set). After a step decided on the GPU it waits, if needed, for that
        step's own kernels."""
        core = self._skip_pending
        if core is not None:
            self._skip_pending = None
            self._last_skipped = bool(core.last_step_skipped())
        return self._last_skipped

    @last_step_skipped.setter
    def last_step_skipped(self, value):
        self._skip_pending = None
        self._last_skipped = bool(value)

    # ---- Param groups ----------------------------------------------------------------------

    def _normalize(self, values, base, where, strict=True):
        """Checks the hypers and options of `values` (a group or the constructor's keywords)
        and returns them in the group's spelling: tuples folded, floats, bools. Unknown keys
        are an error when `strict`, else left out."""
        out = {}
        settings = self._settings()
        for key, value in values.items():
            if key == "params":
                continue
            if key in _SETTINGS:
                if key != "threads" and key != "tuned" and value != settings[key]:
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
            elif strict and key == _MASTER_WEIGHTS:
                having = [name for name in _core.rules()
                          if _MASTER_WEIGHTS in _core.Rule(name).options]
                _fail(f"rule '{self._rule.name}' has no option {_MASTER_WEIGHTS} (in {where}); "
                      f"the built-in rules with it: {', '.join(having) or 'none'}")
            elif strict:
                hyper_names = ", ".join(self._tuple_spelling()) or "none"
                option_names = ", ".join(self._option_defaults) or "none"
                _fail(f"rule '{self._rule.name}' has no hyper or option '{key}' (in {where}); "
                      f"hypers: {hyper_names}; options: {option_names}")
        return out

    def _settings(self):
        return {"rule": self._rule_name, "backend": self._backend, "threads": self._threads,
                "tuned": self._tuned, "state_dtype": self._state_dtype,
                "stochastic_rounding": self._stochastic, "loss_scaling": self._loss_scaling}

    @staticmethod
    def _check_state_dtype(state_dtype):
        """None, a dtype, or {state: dtype or storage string}, checked."""
        def storage_of(value, where):
            if isinstance(value, _torch.dtype):
                if value not in STORAGE_OF_DTYPE:
                    _fail(f"{where} is {value}; states are stored as float32, bfloat16 or "
                          "float16")
                return value
            if isinstance(value, str):
                name, _, rounding = value.partition(" ")
                if name not in _DTYPE_OF_STORAGE or rounding not in ("", "stochastic"):
                    _fail(f"{where} is {value!r}; storage strings are 'f32', 'bf16' or 'f16', "
                          "optionally followed by ' stochastic'")
                return value
            _fail(f"{where} must be a torch dtype or a storage string, not {value!r}")

        if state_dtype is None:
            return None
        if isinstance(state_dtype, dict):
            return {str(name): storage_of(value, f"state_dtype['{name}']")
                    for name, value in state_dtype.items()}
        return storage_of(state_dtype, "state_dtype")

    def _options_of(self, group):
        return {name: group[name] for name in self._option_defaults}

    def _backend_for(self, device):
        if self._backend is not None:
            return self._backend
        return "cuda" if device.type == "cuda" else "cpu"

    def _storage_for(self, dtype, options):
        """CompileOptions::storage for a part of parameters of `dtype` under `options`."""
        storage = {}
        if dtype != _torch.float32:
            storage["param"] = STORAGE_OF_DTYPE[dtype] + (" stochastic" if self._stochastic
                                                          else "")
            storage["grad"] = STORAGE_OF_DTYPE[dtype]
        spec = self._state_dtype
        if spec is None:
            return storage
        if isinstance(spec, dict):
            for name, value in spec.items():
                storage[name] = STORAGE_OF_DTYPE[value] if isinstance(value, _torch.dtype) \
                    else value
            return storage
        # A dtype: every state that exists under these options (the kernel's buffers) except
        # those that exist for master_weights, the f32 copy the option is for.
        for name, when in self._rule.states.items():
            if when == _MASTER_WEIGHTS or not self._state_exists(name, options):
                continue
            storage[name] = STORAGE_OF_DTYPE[spec]
        return storage

    def _state_exists(self, name, options):
        key = tuple(sorted(options.items()))
        if key not in self._buffers_of_options:
            # The interpreter's kernel lists the buffers under these options at no compile cost.
            kernel = self._compile(backend="interp", options=options, tuned=False)
            self._buffers_of_options[key] = set(kernel.storage)
        return name in self._buffers_of_options[key]

    def _compile(self, **settings):
        if self._rule_name in _core.rules():
            return _core.compile(self._rule_name, **settings)
        # A rule file compiles from the text read when the optimizer was made, so every
        # group (and a later load_state_dict) uses the same rule.
        return _core.compile_text(self._rule.source, name=self._rule_name, **settings)

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
        if p.dtype not in STORAGE_OF_DTYPE:
            _fail(f"{where} is {p.dtype}; fuseopt steps float32, bfloat16 and float16 "
                  "parameters")
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
        # With clipping a group has one dtype, so one C++ optimizer (_Group refuses others).
        return [runtime.parts[0].core.last_grad_norm() for runtime in self._groups]

    @_torch.no_grad()
    def step(self, closure=None, *, grad_scale=None, found_inf=None, **kwargs):
        """One step for every parameter that has a gradient. ``closure`` re-evaluates the
        model and returns the loss (run with gradients enabled).

        Loss scaling, as torch's fused optimizers take it from ``GradScaler``: ``grad_scale``
        (a number or a one-element tensor: the gradients are divided by it inside the step)
        and ``found_inf`` (a one-element tensor or number: nonzero skips the step). When the
        step is skipped - ``found_inf`` nonzero, or an unscaled gradient holds an inf or NaN -
        nothing changes in any group (parameters, states, step counts), and a ``found_inf``
        tensor is set to 1. Without the arguments they are read from the attributes
        ``grad_scale`` and ``found_inf`` that torch >= 2's GradScaler sets; torch 1.13's
        passes ``grad_scaler=``. ``last_step_skipped`` tells whether the step was skipped."""
        scaler = kwargs.pop("grad_scaler", None)
        if kwargs:
            _fail(f"step() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        loss = None
        if closure is not None:
            with _torch.enable_grad():
                loss = closure()
        if len(self._groups) != len(self.param_groups):
            _fail("param_groups was changed behind the optimizer's back; use "
                  "add_param_group() or load_state_dict()")
        if scaler is not None:
            if grad_scale is not None or found_inf is not None:
                _fail("step() takes grad_scaler or grad_scale/found_inf, not both")
            grad_scale, found_inf = self._from_grad_scaler(scaler)
        elif grad_scale is None and found_inf is None:
            # torch >= 2's GradScaler.step sets these attributes around the call.
            grad_scale = getattr(self, "grad_scale", None)
            found_inf = getattr(self, "found_inf", None)
        self.last_step_skipped = False
        if self._decidable_on_device(grad_scale, found_inf):
            return self._step_deciding_on_device(loss, grad_scale, found_inf)
        if found_inf is not None and self._number_of(found_inf, "found_inf") != 0:
            # GradScaler found an inf or NaN in the scaled gradients of this optimizer (every
            # group's): skip the whole step, as its fused optimizers do.
            self.last_step_skipped = True
            return loss
        scale = None
        if grad_scale is not None:
            scale = self._number_of(grad_scale, "grad_scale")
            if not (scale > 0 and math.isfinite(scale)):
                _fail(f"grad_scale must be positive and finite, got {scale}")
            if not self._loss_scaling:
                self._enable_loss_scaling()
        # Everything is checked and pointed at this step's gradients before any kernel runs,
        # so that an error leaves every group unstepped.
        work = []
        for number, (group, runtime) in enumerate(zip(self.param_groups, self._groups)):
            work.extend(self._prepare_group(number, group, runtime, scale))
        if not work:
            return loss
        # The kernels check the unscaled gradients for inf/NaN per C++ optimizer (a part of a
        # group) and skip only their own. A skipped step must change nothing anywhere, so
        # where more than one C++ optimizer steps, the decision is made for all of them before
        # any runs: by GradScaler's found_inf (it checked every group's scaled gradients; an
        # unscale factor <= 1 cannot make a finite gradient overflow), or by checking the
        # unscaled gradients here, exactly as the kernels would.
        if self._loss_scaling and len(work) > 1:
            unscale = float(_np_float32(1.0 / (scale if scale is not None else 1.0)))
            if found_inf is None or unscale > 1.0:
                if self._any_nonfinite(work, unscale):
                    return self._skipped(loss, found_inf, scaler)
        taken_any = False
        for runtime, part, stepped in work:
            if part.core.decides_on_device:  # an earlier step was decided on the device
                part.core.set_decide_on_device(False)
            taken = self._run_part(runtime, part)
            if not taken:
                if taken_any:
                    # Only possible when found_inf said 0 but a gradient holds an inf or NaN
                    # (the pre-check above decides exactly as the kernels do).
                    if found_inf is None:
                        raise _core.InternalError(
                            "fuseopt.torch.Optimizer: the pre-check found every unscaled "
                            "gradient finite, but a kernel skipped its step")
                    _fail("found_inf was 0, but a gradient holds an inf or NaN: the groups "
                          "before it were stepped, the rest skipped. Pass the found_inf of "
                          "the gradients (GradScaler does), or none to let fuseopt check")
                return self._skipped(loss, found_inf, scaler)
            taken_any = True
            for local in stepped:
                index = part.members[local]
                if runtime.entries[index] is None:
                    self._install_state(runtime, index, runtime.params[index])
        return loss

    def _decidable_on_device(self, grad_scale, found_inf):
        """Whether a step can be decided on the GPU with no host round trip: GradScaler's
        found_inf (and grad_scale, if given) are one-element float32 tensors on the CUDA
        device of every param group, and every group's kernels can decide on the device (not
        LAMB-like rules). Builds the kernels with loss scaling if needed, as the host path
        would for this grad_scale."""
        if not isinstance(found_inf, _torch.Tensor) or found_inf.device.type != "cuda":
            return False
        if grad_scale is None and not self._loss_scaling:
            return False
        for value in (found_inf, grad_scale):
            if value is None:
                continue
            if (not isinstance(value, _torch.Tensor) or value.device != found_inf.device
                    or value.dtype != _torch.float32 or value.numel() != 1
                    or not value.is_contiguous()):
                return False
        if not self._groups or any(runtime.device != found_inf.device
                                   for runtime in self._groups):
            return False
        if not self._loss_scaling:
            self._enable_loss_scaling()
        return all(part.kernel.device_memory and part.kernel.decides_on_device
                   for runtime in self._groups for part in runtime.parts)

    def _step_deciding_on_device(self, loss, grad_scale, found_inf):
        """A step whose skip (and clip factors) the kernels decide on the GPU: found_inf and
        grad_scale are read there and nothing is read back; last_step_skipped learns the
        outcome when asked (a skip also sets found_inf to 1, as GradScaler expects). With
        several C++ optimizers (groups, dtypes) each first checks its gradients into the
        shared found_inf, so that an inf anywhere skips them all."""
        work = []
        for number, (group, runtime) in enumerate(zip(self.param_groups, self._groups)):
            work.extend(self._prepare_group(number, group, runtime, None))
        if not work:
            return loss
        device = found_inf.device
        # The kernels run on the device's legacy default stream (see _run_part).
        stream = _torch.cuda.current_stream(device)
        side_stream = stream != _torch.cuda.default_stream(device)
        if side_stream:
            stream.synchronize()
        scale_address = grad_scale.data_ptr() if grad_scale is not None else 0
        for _, part, _ in work:
            part.core.set_decide_on_device(True)
            part.core.set_device_loss_scale(scale_address, found_inf.data_ptr())
        if len(work) > 1:
            for _, part, _ in work:
                part.core.check_gradients_on_device()
        for _, part, _ in work:
            part.core.step()
        if side_stream:
            for _, part, _ in work:
                part.core.synchronize()
        self._skip_pending = work[0][1].core
        first = [(runtime, part.members[local]) for runtime, part, stepped in work
                 for local in stepped if runtime.entries[part.members[local]] is None]
        # optimizer.state gets entries for parameters stepped for the first time: this needs
        # the outcome (a skipped first step leaves no state), so it waits, once per parameter.
        if first and not self.last_step_skipped:
            for runtime, index in first:
                self._install_state(runtime, index, runtime.params[index])
        return loss

    def _skipped(self, loss, found_inf, scaler):
        """Reports a step the kernels' (or the pre-) check skipped: the caller's found_inf
        tensor and torch 1.13's GradScaler learn of it, so that update() lowers the scale."""
        self.last_step_skipped = True
        if isinstance(found_inf, _torch.Tensor):
            found_inf.fill_(1.0)
        if scaler is not None:
            for value in scaler._per_optimizer_states[id(self)]["found_inf_per_device"].values():
                value.fill_(1.0)
        return loss

    @staticmethod
    def _number_of(value, what):
        if isinstance(value, _torch.Tensor):
            if value.numel() != 1:
                _fail(f"{what} must be a one-element tensor, not one of shape "
                      f"{tuple(value.shape)}")
            return float(value.item())
        try:
            return float(value)
        except (TypeError, ValueError):
            _fail(f"{what} must be a number or a one-element tensor, not {value!r}")

    def _from_grad_scaler(self, scaler):
        """torch 1.13's contract (torch.optim.Adam(fused=True)): the optimizer asks the scaler
        for its scale and for found_inf over this optimizer's gradients."""
        state = scaler._per_optimizer_states[id(self)]
        if getattr(state["stage"], "name", "") == "UNSCALED":
            # unscale_() already divided the gradients (e.g. to clip them) and checked them.
            per_device = state["found_inf_per_device"]
            scale = None
        else:
            scale = scaler._get_scale_async()
            per_device = scaler._check_inf_per_device(self)
        found = [value.to("cpu") for value in per_device.values()]
        if not found:
            _fail("the GradScaler recorded no inf checks for this optimizer")
        return scale, sum(found)

    def _enable_loss_scaling(self):
        """Rebuilds every group's kernels with loss scaling (the first step given a scale),
        keeping states, scalars and step counts: they move through optimizer.state as
        load_state_dict() moves them."""
        self._refresh_state()
        old = self._groups
        self._loss_scaling = True
        self._groups = [_Group(self, group) for group in self.param_groups]
        for previous, runtime in zip(old, self._groups):
            for index, p in enumerate(runtime.params):
                if previous.entries[index] is not None:
                    self._import_state(runtime, index, p)

    @staticmethod
    def _any_nonfinite(work, unscale):
        """Whether an unscaled gradient f32(grad * unscale) is inf or NaN anywhere: the
        kernels' check, made once for every part. Rounding is monotonic, so the largest
        magnitude decides: max|g| * unscale overflows exactly when some element's product
        does, and a NaN makes the max NaN."""
        for runtime, part, stepped in work:
            grads = [runtime.params[part.members[local]].grad for local in stepped]
            largest = _torch.stack([g.abs().max() for g in grads]).float()
            factor = _torch.tensor(unscale, dtype=_torch.float32, device=largest.device)
            if not bool(_torch.isfinite(largest * factor).all()):
                return True
        return False

    def _prepare_group(self, number, group, runtime, scale):
        """Checks a group's options and gradients and points its C++ optimizers at them;
        returns (runtime, part, local indices to step) for each part with work."""
        for name, compiled in runtime.options.items():
            if group.get(name, compiled) != compiled:
                _fail(f"option '{name}' of param group {number} changed from {compiled!r} to "
                      f"{group[name]!r}; options are compile-time values: add a param group or "
                      "make a new optimizer for other options")
        hypers = self._hypers_of(group)
        if runtime.loss_scaling:
            hypers["grad_scale"] = scale if scale is not None else 1.0
        for part in runtime.parts:
            for name, value in hypers.items():
                if name in part.hypers and part.hypers[name] != value:
                    part.core.set_hyper(name, value)
                    part.hypers[name] = value
        stepped = {id(part): [] for part in runtime.parts}
        for index, p in enumerate(runtime.params):
            part, local = runtime.part_of[index], runtime.local[index]
            entry = runtime.entries[index]
            if entry is not None and self.state.get(p) is not entry:
                self._import_state(runtime, index, p)
            grad = p.grad
            if grad is None:
                if runtime.enabled[index]:
                    part.core.set_enabled(local, False)
                    runtime.enabled[index] = False
                continue
            if p.device != runtime.device:
                _fail(f"parameter {index} of param group {number} moved from "
                      f"{runtime.device} to {p.device}; make the optimizer after moving the "
                      "model")
            self._check_grad(p, grad, part.dtype, number, index)
            addresses = (p.data_ptr(), grad.data_ptr())
            if addresses != runtime.addresses[index]:
                part.core._set_addresses(local, addresses[0], addresses[1])
                runtime.addresses[index] = addresses
            if not runtime.enabled[index]:
                part.core.set_enabled(local, True)
                runtime.enabled[index] = True
            stepped[id(part)].append(local)
        return [(runtime, part, stepped[id(part)]) for part in runtime.parts
                if stepped[id(part)]]

    @staticmethod
    def _run_part(runtime, part):
        side_stream = False
        if runtime.device.type == "cuda":
            # The kernel runs on the device's legacy default stream, which orders itself with
            # torch's default stream. Work torch queued on another stream (the gradients)
            # must be done first, and what torch queues there next must wait for the step.
            stream = _torch.cuda.current_stream(runtime.device)
            side_stream = stream != _torch.cuda.default_stream(runtime.device)
            if side_stream:
                stream.synchronize()
        taken = part.core.step()
        if side_stream:
            part.core.synchronize()
        return taken

    @staticmethod
    def _check_grad(p, grad, dtype, group, index):
        # The common case first, with no message built: this runs for every parameter at
        # every step.
        if (grad.layout == _torch.strided and grad.dtype == dtype and p.dtype == dtype
                and grad.shape == p.shape and grad.device == p.device
                and grad.is_contiguous() and p.is_contiguous()):
            return
        where = f"parameter {index} of param group {group}"
        if grad.is_sparse or grad.layout != _torch.strided:
            _fail(f"{where} has a sparse gradient; fuseopt steps dense gradients only "
                  "(torch.optim.SparseAdam handles sparse ones)")
        if p.dtype != dtype or not p.is_contiguous():
            _fail(f"{where} is no longer a contiguous {dtype} tensor (its .data was replaced)")
        if grad.dtype != dtype:
            _fail(f"the gradient of {where} is {grad.dtype}; fuseopt takes gradients of the "
                  f"parameter's dtype ({dtype})")
        if grad.device != p.device:
            _fail(f"the gradient of {where} is on {grad.device}, the parameter on {p.device}")
        if grad.shape != p.shape:
            _fail(f"the gradient of {where} has shape {tuple(grad.shape)}, the parameter "
                  f"{tuple(p.shape)}")
        if not grad.is_contiguous():
            _fail(f"the gradient of {where} is not contiguous")

    # ---- State -----------------------------------------------------------------------------

    @staticmethod
    def _state_tensor(part, local, name, p):
        """A state as a torch tensor of its storage dtype, shaped like `p`: sharing the C++
        state's memory on the host (bfloat16 through NumPy's int16, which has its size:
        NumPy has no bfloat16), a copy on a device."""
        dtype = part.state_dtypes[name]
        if part.kernel.device_memory:
            values = _torch.from_numpy(part.core.read_state(local, name))
            return values.to(dtype=dtype).view_as(p).to(p.device)
        memory = part.core.data(local, name)  # float32, float16, or uint16 bfloat16 bits
        if dtype == _torch.bfloat16:
            return _torch.from_numpy(memory.view("int16")).view(_torch.bfloat16).view_as(p)
        return _torch.from_numpy(memory).view_as(p)

    def _install_state(self, runtime, index, p):
        """optimizer.state[p] for a parameter fuseopt has stepped: tensors that share the C++
        states' memory on the CPU, copies on a device."""
        part, local = runtime.part_of[index], runtime.local[index]
        core = part.core
        entry = {"step": _torch.tensor(float(core.step_count(local)))}
        for name in part.state_names:
            entry[name] = self._state_tensor(part, local, name, p)
        for name in part.scalar_names:
            # A Python float keeps the double exactly (torch's load_state_dict would cast a
            # tensor to the parameter's float32).
            entry[name] = core.scalar(local, name)
        self.state[p] = entry
        runtime.entries[index] = entry

    def _refresh_state(self):
        """Brings what is not shared memory up to date: steps, scalars, device copies."""
        for runtime in self._groups:
            for index, p in enumerate(runtime.params):
                entry = runtime.entries[index]
                if entry is not None and self.state.get(p) is not entry:
                    self._import_state(runtime, index, p)
                    entry = runtime.entries[index]
                if entry is None:
                    continue
                part, local = runtime.part_of[index], runtime.local[index]
                entry["step"] = _torch.tensor(float(part.core.step_count(local)))
                for name in part.scalar_names:
                    entry[name] = part.core.scalar(local, name)
                if part.kernel.device_memory:
                    for name in part.state_names:
                        entry[name] = self._state_tensor(part, local, name, p)

    def _import_state(self, runtime, index, p):
        """Copies optimizer.state[p] (set by load_state_dict or by a caller) into the C++
        optimizer, then installs the shared entry in its place. Values are converted to the
        state's storage type (read as float32, rounded to nearest even when stored narrower:
        a value already of that type is copied exactly)."""
        part, local = runtime.part_of[index], runtime.local[index]
        core = part.core
        values = self.state.get(p, {})
        if not values:
            core.set_step_count(local, 0)
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
            elif name in part.state_names:
                if value is None:  # torch.optim.SGD keeps momentum_buffer=None without momentum
                    continue
                tensor = value.detach() if isinstance(value, _torch.Tensor) else _torch.as_tensor(value)
                if tensor.numel() != p.numel():
                    _fail(f"{where}: state '{name}' has {tensor.numel()} elements, "
                          f"the parameter {p.numel()}")
                host = tensor.to(device="cpu", dtype=_torch.float32).contiguous().reshape(-1)
                core.write_state(local, name, host.numpy())
            elif name in part.scalar_names:
                core.set_scalar(local, name, float(value))
            else:
                _fail(f"{where} has '{name}', which rule '{self._rule.name}' with these options "
                      f"does not keep (states: {', '.join(part.state_names) or 'none'}; "
                      f"scalars: {', '.join(part.scalar_names) or 'none'}); was it saved by "
                      "another optimizer?")
        # torch.optim.SGD keeps no step: a parameter with state has taken at least one.
        core.set_step_count(local, steps if steps is not None else 1)
        self._install_state(runtime, index, p)

    def state_dict(self):
        """torch's state dict: per parameter the rule's states under their names (PyTorch's
        names, rules/README.md) in their storage dtypes, scalar states, and ``step``; and the
        param groups."""
        self._refresh_state()
        return super().state_dict()

    def load_state_dict(self, state_dict):
        """Loads a state dict from this class (or from the torch.optim class of the same rule,
        whose state names fuseopt shares). Each group's kernel is rebuilt for the loaded
        options; the optimizer then continues bit-identically to the one that was saved."""
        super().load_state_dict(state_dict)
        # torch.optim casts floating-point state to its parameter's dtype. fuseopt's states
        # have their own storage types (an f32 master copy or f32 moments of a bf16
        # parameter): take the saved tensors as they were, so nothing is rounded twice.
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for saved_id, p in zip(saved_ids, params):
            saved = state_dict["state"].get(saved_id)
            if not saved or p not in self.state:
                continue
            for name, value in saved.items():
                if name != "step" and isinstance(value, _torch.Tensor):
                    self.state[p][name] = value.detach().to(p.device)
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
            kernel = (", ".join(part.kernel.name for part in self._groups[i].parts)
                      if i < len(self._groups) else "?")
            lines.append(f"Parameter Group {i} ({kernel})")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
