"""Stochastic gradient descent with momentum and weight decay, the paper's optimiser, and (from
``tinyres/lr_scheduler.py``) the learning-rate schedules that drive it."""

import numpy as np

from tinyres import lr_scheduler  # noqa: F401  (PyTorch's spelling too: optim.lr_scheduler.MultiStepLR)
from tinyres.backend import backend_of
from tinyres.lr_scheduler import MultiStepLR, WarmupUntilError  # noqa: F401
from tinyres.tensor import Tensor

GROUP_SETTINGS = ("lr", "momentum", "weight_decay")


class SGD:
    """Stochastic gradient descent with momentum and weight decay, as PyTorch's ``SGD`` does it.

    For each parameter p with gradient g, learning rate lr, momentum mu and weight decay wd:

        d <- g + wd * p           (weight decay: the gradient of wd/2 * |p|^2 added to the loss's)
        v <- mu * v + d           (v, the velocity, starts as the first d)
        p <- p - lr * v

    With mu = 0 there is no velocity and the step is p <- p - lr * d. Updates are in place, on the
    parameter's own backend. The velocity follows its parameter: if the model was moved
    (``Module.to``) or converted (``Module.astype``) since the last step, the next step first
    moves or converts the velocity the same way, as PyTorch's optimisers follow their parameters.

    A parameter is skipped, velocity and weight decay included, when it is frozen
    (``requires_grad`` False, e.g. after ``model.requires_grad_(False)``) or has no gradient.

    Parameter groups, as in PyTorch: pass dicts instead of tensors to give groups of parameters
    their own settings; what a group leaves out comes from the arguments. The usual one: no
    weight decay on batch norm's gamma and beta and on biases (the 1-D parameters)::

        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim == 1]
        SGD([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=0.1, momentum=0.9, weight_decay=1e-4)

    Args:
        params: the tensors to train (``model.parameters()``), or a list of groups: dicts with
            ``"params"`` and any of ``"lr"``, ``"momentum"``, ``"weight_decay"``.
        lr, momentum, weight_decay: lr > 0, momentum >= 0, weight_decay >= 0; the defaults of
            the groups (``lr`` may be left out when every group sets its own).

    Attributes:
        param_groups: one dict per group: ``"params"`` (a list of tensors) and its settings.
            A learning-rate scheduler changes ``group["lr"]``; so may you.
        parameters: every parameter, the groups' in order (``velocity`` and ``state_dict``
            follow this order: ``velocity.{i}`` belongs to ``parameters[i]``).
        lr, momentum, weight_decay: the setting shared by every group; setting one sets it in
            every group (reading one that the groups do not share is an error).
    """

    def __init__(self, params, lr=None, momentum=0.0, weight_decay=0.0):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        self.param_groups = [_group(g, i, defaults) for i, g in enumerate(_as_groups(params))]
        self.parameters = [p for group in self.param_groups for p in group["params"]]
        seen = set()
        for i, p in enumerate(self.parameters):
            if id(p) in seen:
                raise ValueError(f"SGD: parameter {i} appears twice (in two groups, or twice in one); give each once")
            seen.add(id(p))
        self.velocity = [None] * len(self.parameters)

    # ----- the settings every group shares (the trainer sets optimizer.lr at each step) ------
    def _shared(self, name):
        values = {group[name] for group in self.param_groups}
        if len(values) != 1:
            raise AttributeError(f"SGD.{name}: the parameter groups have different values {sorted(values)}; "
                                 f"read param_groups[i][{name!r}]")
        return values.pop()

    def _set_all(self, name, value):
        for i, group in enumerate(self.param_groups):
            group[name] = _checked(name, value, i)

    lr = property(lambda self: self._shared("lr"), lambda self, v: self._set_all("lr", v))
    momentum = property(lambda self: self._shared("momentum"), lambda self, v: self._set_all("momentum", v))
    weight_decay = property(lambda self: self._shared("weight_decay"), lambda self, v: self._set_all("weight_decay", v))

    # ----- the update --------------------------------------------------------------------------
    def step(self):
        """Update every trainable parameter that has a gradient, in place (the formulas above)."""
        i = 0
        for group in self.param_groups:
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                self._update(i, p, lr, momentum, weight_decay)
                i += 1

    def _update(self, i, p, lr, momentum, weight_decay):
        if p.grad is None or not p.requires_grad:
            return
        step = p.grad + weight_decay * p.data if weight_decay else p.grad.copy()
        if momentum:
            if self.velocity[i] is None:
                self.velocity[i] = step
            else:
                self.velocity[i] = _like_parameter(self.velocity[i], p)
                self.velocity[i] *= momentum
                self.velocity[i] += step
            step = self.velocity[i]
        p.data -= lr * step

    def zero_grad(self):
        """Forget every parameter's gradient (backward adds into ``grad``, so call this before it)."""
        for p in self.parameters:
            p.grad = None

    # ----- state -------------------------------------------------------------------------------
    def state_dict(self):
        """Momentum buffers as host NumPy arrays of their parameter's dtype (zeros where none
        exists yet), ``velocity.{i}`` for ``parameters[i]``. The groups' settings are not in it:
        they come from the code that builds the optimizer (and from a scheduler's state)."""
        return {
            f"velocity.{i}": (np.zeros(p.shape, p.dtype) if v is None else backend_of(v).to_numpy(v).astype(p.dtype, copy=False))
            for i, (p, v) in enumerate(zip(self.parameters, self.velocity))
        }

    def load_state_dict(self, state):
        """Restore the momentum buffers from :meth:`state_dict`'s arrays (KeyError names a
        missing one, ValueError a wrong shape)."""
        for i, p in enumerate(self.parameters):
            value = state[f"velocity.{i}"]
            if value.shape != p.shape:
                raise ValueError(f"SGD.load_state_dict: velocity.{i} has shape {value.shape}, parameter has {p.shape}")
            self.velocity[i] = p.backend.asarray(value.astype(p.dtype))


def _as_groups(params):
    """A list of group dicts from tensors or dicts (a Module is a mistake worth naming)."""
    if hasattr(params, "parameters") and callable(params.parameters):
        raise TypeError("SGD: pass the model's parameters, SGD(model.parameters(), ...), not the model")
    if isinstance(params, Tensor):  # (iterating one would give its rows, views no gradient reaches)
        raise TypeError("SGD: pass an iterable of tensors, SGD([w], ...) or SGD(model.parameters(), ...), not one tensor")
    params = list(params)
    if not params:
        raise ValueError("SGD: no parameters to train. A module's layers count when they are its attributes or "
                         "in an nn.Sequential, not in a plain Python list")
    if params and all(isinstance(p, dict) for p in params):
        return params
    if any(isinstance(p, dict) for p in params):
        raise TypeError("SGD: give either tensors or parameter groups (dicts with 'params'), not both")
    return [{"params": params}]


def _group(group, index, defaults):
    unknown = sorted(set(group) - {"params", *GROUP_SETTINGS})
    if unknown:
        raise ValueError(f"SGD: parameter group {index} has unknown settings {unknown}; a group may set "
                         f"'params', {', '.join(map(repr, GROUP_SETTINGS))}")
    if "params" not in group:
        raise ValueError(f"SGD: parameter group {index} has no 'params'")
    params = [group["params"]] if isinstance(group["params"], Tensor) else list(group["params"])
    for k, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"SGD: parameter {k} of group {index} is a {type(p).__name__}, not a Tensor")
    settings = {name: _checked(name, group.get(name, defaults[name]), index) for name in GROUP_SETTINGS}
    return {"params": params, **settings}


def _checked(name, value, index):
    """A setting as a Python float, after checking its range. (Python floats: a NumPy float64
    here would turn float32 updates and momentum into float64.)"""
    if name == "lr" and value is None:
        raise ValueError(f"SGD: parameter group {index} has no learning rate; pass lr=... or set 'lr' in the group")
    value = float(value)
    if not (value > 0 if name == "lr" else value >= 0):  # (NaN fails both)
        raise ValueError(f"SGD: need lr > 0, momentum >= 0, weight_decay >= 0; got {name}={value} (parameter group {index})")
    return value


def _like_parameter(array, p):
    """``array`` on ``p``'s backend and in its dtype: itself if it is already, else a copy."""
    if p.backend.owns(array) and array.dtype == p.dtype:
        return array
    return p.backend.asarray(backend_of(array).to_numpy(array).astype(p.dtype))
