"""``Module``: a piece of a network that owns parameters, buffers and sub-modules.

A module finds its parts by looking at its own attributes: every :class:`~tinyres.Tensor` is a
parameter, every Module a child, and the names given to :meth:`register_buffer` are buffers
(plain arrays that are state but not trained, like batch norm's running statistics). Names
follow attribute paths, e.g. ``stage1.0.conv1.weight``, so ``state_dict`` keys read like code.
Replacing an attribute replaces the part: ``model.fc = nn.Linear(512, 10)`` gives a new head.

A parameter with ``requires_grad`` False is *frozen*: ops record no gradient for it and the
optimizer leaves it alone (``model.requires_grad_(False)`` freezes a whole module).
"""

from collections import namedtuple
from contextlib import contextmanager

import numpy as np

from tinyres.backend import backend_of, get_backend
from tinyres.tensor import Tensor


class Module:
    """Base class of layers and models: subclasses set attributes in ``__init__`` and define
    ``forward``; calling the module calls ``forward``."""

    def __init__(self):
        self.training = True
        self._buffers = []

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *inputs):
        return self.forward(*inputs)

    # ----- parts --------------------------------------------------------------------------
    def register_buffer(self, name, array):
        """Keep ``array`` as state that is saved and moved with the module but not trained."""
        setattr(self, name, array)
        if name not in self._buffers:
            self._buffers.append(name)

    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        return (module for _, module in self.named_children())

    def named_modules(self, prefix="", seen=None):
        """This module and all below it, depth first, with their dotted names. A module used in
        two places is listed once, under its first name (so its parameters are trained once)."""
        seen = set() if seen is None else seen
        if id(self) in seen:
            return
        seen.add(id(self))
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, seen)

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_parameters(self):
        """Every parameter once, with its dotted name (a tensor shared by two modules is listed
        under its first name only)."""
        seen = set()
        for prefix, module in self.named_modules():
            for name, value in vars(module).items():
                if isinstance(value, Tensor) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{prefix}.{name}" if prefix else name), value

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for prefix, module in self.named_modules():
            for name in module._buffers:
                yield (f"{prefix}.{name}" if prefix else name), getattr(module, name)

    def buffers(self):
        """Every buffer array (batch norm's running statistics, ...), in ``state_dict`` order."""
        return [array for _, array in self.named_buffers()]

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module, then on this one (children before parents, as
        PyTorch does), each module once; returns self. For example, an initialisation of your own:
        ``model.apply(lambda m: m.bias.data.fill(0) if isinstance(m, nn.Linear) else None)``."""
        for module in self._children_first(set()):
            fn(module)
        return self

    def _children_first(self, seen):
        seen.add(id(self))
        for child in self.children():
            if id(child) not in seen:
                yield from child._children_first(seen)
        yield self

    def num_parameters(self):
        """How many numbers training adjusts."""
        return sum(p.size for p in self.parameters())

    # ----- modes and gradients ------------------------------------------------------------
    def train(self, mode=True):
        """Training mode: batch norm uses batch statistics, dropout drops. Each child is switched
        by its own ``train``, so a module that overrides it (say, to keep its batch norms in
        evaluation mode while the rest fine-tunes) has its way, as in PyTorch."""
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        """Evaluation mode: batch norm uses running statistics, dropout is off."""
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze (True) every parameter of this module; returns self. A frozen
        parameter gets no gradient, and the optimizer neither moves it nor decays it."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    # ----- state ----------------------------------------------------------------------------
    def state_dict(self):
        """Every parameter and buffer by name, as NumPy arrays copied to the host."""
        state = {name: p.numpy() for name, p in self.named_parameters()}
        for name, array in self.named_buffers():
            state[name] = backend_of(array).to_numpy(array)
        return state

    def load_state_dict(self, state, strict=True):
        """Copy arrays from ``state`` (as made by :meth:`state_dict`) into this module, in place,
        converted to each parameter's or buffer's dtype.

        Every name, shape and dtype is checked before anything is copied: on a mismatch nothing
        is loaded, and a :class:`StateDictError` lists the missing names, the unexpected ones, and
        those of the wrong shape or of a dtype that is not floating point. With ``strict=False``
        missing and unexpected names are allowed (and skipped); wrong shapes and dtypes are not.
        Returns ``IncompatibleKeys(missing_keys, unexpected_keys)``, as PyTorch does.
        """
        targets = dict(self.named_parameters())
        targets.update(self.named_buffers())
        return load_arrays(targets, state, strict, f"load_state_dict: the state does not fit {type(self).__name__}")

    def to(self, backend):
        """Move every parameter and buffer to ``backend`` ("numpy" or "cupy"); returns self.

        Parameters are changed in place (the same Tensor objects get new data, their gradients
        are dropped), so an optimizer built before the move still holds the model's parameters
        (SGD moves its momentum to them at its next step).
        """
        target = get_backend(backend)
        for p in self.parameters():
            p.data, p.grad = Tensor(p.data, dtype=p.dtype, backend=target).data, None
        for module in self.modules():
            for name in module._buffers:
                array = getattr(module, name)
                setattr(module, name, target.asarray(backend_of(array).to_numpy(array)))
        return self

    def astype(self, dtype):
        """Convert every floating parameter and buffer to ``dtype`` (e.g. float64 for gradient
        checks), parameters in place as in :meth:`to`; returns self."""
        for p in self.parameters():
            p.data, p.grad = Tensor(p.data, dtype=dtype).data, None
        for module in self.modules():
            for name in module._buffers:
                setattr(module, name, getattr(module, name).astype(dtype))
        return self

    # ----- printing -------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        children = [f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        return f"{type(self).__name__}(\n" + "\n".join(children) + "\n)"


class StateDictError(ValueError):
    """A state dict that does not fit a module; the message lists every name that is wrong."""


IncompatibleKeys = namedtuple("IncompatibleKeys", "missing_keys unexpected_keys")


def load_arrays(targets, state, strict, what):
    """Copy ``state[name]`` into each ``targets[name]`` (a Tensor or a backend array), in place,
    converted to the target's dtype, after checking every name, shape and dtype; on any problem
    nothing is copied and :class:`StateDictError` says ``what``, then lists them all."""
    missing = [name for name in targets if name not in state]
    unexpected = [name for name in state if name not in targets]
    values, problems = {}, []
    for name, target in targets.items():
        if name not in state:
            continue
        value = _on_host(state[name])
        expected = tuple(target.shape)
        if value.dtype.kind != "f":
            problems.append(f"{name} has dtype {value.dtype}, not a floating-point one")
        elif value.shape != expected:
            problems.append(f"{name} has shape {value.shape}, the module expects {expected}")
        else:
            values[name] = value
    names = strict and (missing or unexpected)
    if names:
        problems = ([f"missing {missing}"] if missing else []) + ([f"unexpected {unexpected}"] if unexpected else []) + problems
    if missing and all(f"model.{name}" in state for name in missing):  # a training run's checkpoint.npz
        raise StateDictError(
            f"{what} (nothing was loaded): these are a training run's checkpoint arrays, whose weights are "
            "named model.<name> beside the optimizer's. Load the run with tinyres.evaluate.load_run(RUN_DIR), "
            "or its weights alone with {k[6:]: v for k, v in arrays.items() if k.startswith('model.')}"
        )
    if problems:
        raise StateDictError(
            f"{what} (nothing was loaded): {'; '.join(problems)}. Load weights saved from the same "
            "architecture (depth, shortcut option, number of classes)"
            + (", or pass strict=False to skip the missing and unexpected names" if names else "")
        )
    for name, value in values.items():
        array = targets[name].data if isinstance(targets[name], Tensor) else targets[name]
        array[...] = backend_of(array).asarray(value.astype(array.dtype))
    return IncompatibleKeys(missing, unexpected)


def _on_host(value):
    """A NumPy array of a Tensor, a backend array or anything ``np.asarray`` takes."""
    if isinstance(value, Tensor):
        return value.numpy()
    try:
        return backend_of(value).to_numpy(value)
    except TypeError:  # a number, a list, ...
        return np.asarray(value)


@contextmanager
def observing(modules, record):
    """Inside the ``with`` block, every call of one of ``modules`` also calls
    ``record(module, output)``; what the modules compute does not change.

    Calling a module calls ``self.forward``, and an attribute ``forward`` set on the instance
    takes precedence over the class's method. Each module gets a wrapper there for the block;
    on leaving it (even by an error) whatever was there before is put back.
    """

    def recording(module, forward):
        def wrapper(*inputs):
            output = forward(*inputs)
            record(module, output)
            return output

        return wrapper

    wrapped = []  # (module, its own instance attribute `forward` before wrapping, or None)
    try:
        for module in modules:
            wrapped.append((module, vars(module).get("forward")))
            module.forward = recording(module, module.forward)
        yield
    finally:
        for module, own_forward in reversed(wrapped):  # reversed: a module listed twice unwraps fully
            if own_forward is None:
                del module.forward  # back to the class's forward
            else:
                module.forward = own_forward
