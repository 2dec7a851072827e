"""``Tensor``: an array on some backend, plus what autograd needs to differentiate through it.

The numbers live in ``tensor.data``, a NumPy or CuPy array. A tensor made by an op from tensors
that need gradients carries ``grad_fn``, the graph :class:`~tinyres.autograd.Node` of that op;
``tensor.backward()`` walks those nodes (see ``autograd.py``). The ops themselves live in
``tinyres/nn/functional/``, one file per family; the methods below only forward to them.

Dtypes: floating data is stored as float32 unless you ask for ``dtype="float64"`` (gradient
checks do); integer data (class labels) keeps its integer type and cannot require gradients.
"""

import weakref

import numpy as np

from tinyres import autograd
from tinyres.backend import backend_of, get_backend

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Tensor:
    """An n-dimensional array that records how it was computed.

    Args:
        data: a NumPy or CuPy array, a nested list or a number. Arrays stay on their backend.
        requires_grad: if True, ``backward`` fills ``self.grad`` for this tensor.
        dtype: ``"float32"`` (default for floating data) or ``"float64"``.
        backend: ``"numpy"`` or ``"cupy"``: copy ``data`` to that backend.

    An array already on the backend in the tensor's dtype is used as it is, not copied (as
    ``torch.from_numpy`` shares memory): a change to one shows in the other, an optimizer's step
    included. Pass ``array.copy()`` to keep yours apart. Likewise, changing ``data`` in place between
    a forward pass and its ``backward`` (an optimizer step, say) changes the gradients that
    backward computes from it: tinyres does not check (PyTorch's version counters do), so step
    after backward, as a training loop does.

    Attributes:
        data: the array.
        grad: an array like ``data`` holding d(loss)/d(self) after ``backward``, or None.
        grad_fn: the graph node of the op that made this tensor (None for leaves).
    """

    __slots__ = ("data", "requires_grad", "grad", "grad_fn", "_accumulator", "__weakref__")
    __array_priority__ = 1000  # make `np_array + tensor` call Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None, backend=None):
        if isinstance(data, Tensor):
            data = data.data
        source = _backend_of_or_none(data)
        target = get_backend(backend) if backend is not None else (source or get_backend("numpy"))
        if source is not target or not target.owns(data):  # host data, or an explicit move
            data = target.asarray(source.to_numpy(data) if source is not None else data)
        if dtype is not None:
            if np.dtype(dtype).kind == "f" and np.dtype(dtype) not in FLOAT_DTYPES:
                raise TypeError(f"Tensor: floating dtype must be float32 or float64, got {np.dtype(dtype)}")
            data = data.astype(np.dtype(dtype), copy=False)
        elif data.dtype.kind == "f" and data.dtype != np.float32:
            data = data.astype(np.float32)
        elif data.dtype.kind not in "fiub":
            raise TypeError(f"Tensor: unsupported dtype {data.dtype}; use float32, float64 or int")
        if requires_grad and data.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"Tensor: only float32/float64 tensors can require gradients, got {data.dtype}"
            )
        self.data = data
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.grad_fn = None
        self._accumulator = None

    @classmethod
    def from_op(cls, name, data, backward, *inputs):
        """The result of an op: wraps ``data`` and, if needed, records the op in the graph.

        Args:
            name: the op's name.
            data: the output array.
            backward: ``backward(grad_output) -> tuple``, one gradient (or None) per input.
            inputs: the tensor inputs, in the order backward returns their gradients.
        """
        if isinstance(data, np.generic):  # NumPy reductions return scalars; keep arrays
            data = np.asarray(data)
        out = cls.__new__(cls)
        out.data, out.grad, out.grad_fn, out._accumulator = data, None, None, None
        out.requires_grad = autograd.is_grad_enabled() and any(t.requires_grad for t in inputs)
        if out.requires_grad:
            nodes = tuple(t._node() if t.requires_grad else None for t in inputs)
            out.grad_fn = autograd.Node(name, backward, nodes, data.shape, data.dtype)
        return out

    def _node(self):
        """This tensor's place in the graph: the node of the op that made it, or, for a leaf,
        its one GradAccumulator (shared by every use, so the leaf appears once in the graph).
        The accumulator knows the shape and dtype gradients must have, so it is made anew when
        ``data`` was replaced by another shape or dtype (``Module.astype`` does that)."""
        if self.grad_fn is not None:
            return self.grad_fn
        # held weakly: the graph keeps it alive while it exists, and a leaf no graph uses any more
        # (an input that required a gradient) is freed at once, not by the cycle collector
        accumulator = self._accumulator() if self._accumulator is not None else None
        if accumulator is None or (accumulator.shape, accumulator.dtype) != (self.shape, self.dtype):
            accumulator = autograd.GradAccumulator(self)
            self._accumulator = weakref.ref(accumulator)
        return accumulator

    # ----- autograd -------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Compute gradients of this tensor w.r.t. every leaf that requires them.

        Args:
            grad: d(something)/d(self), same shape as self; may be omitted for a one-element
                tensor (a loss), where it is 1.
            retain_graph: keep saved arrays so backward can run through the graph again.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad (no input had requires_grad=True, "
                "or it was computed under no_grad())"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: grad can be omitted only for a one-element tensor, this one has "
                    f"shape {self.shape}; pass grad= of that shape"
                )
            grad = self.xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward: grad has shape {tuple(grad.shape)}, expected {self.shape}")
            grad = grad.astype(self.dtype, copy=False)
        autograd.run_backward(self._node(), grad, retain_graph)

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` in place and return self: ``False`` freezes a parameter (ops
        record no gradient for it and optimizers skip it), ``True`` makes a leaf trainable."""
        if self.grad_fn is not None:
            raise RuntimeError(
                f"requires_grad_: this tensor was computed by {self.grad_fn.name}, so whether it needs a "
                "gradient follows from its inputs; set it on a leaf (a parameter), or use x.detach()"
            )
        if requires_grad and self.dtype not in FLOAT_DTYPES:
            raise TypeError(f"requires_grad_: only float32/float64 tensors can require gradients, got {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self):
        """The same data, cut from the graph (no gradient flows through it)."""
        return Tensor(self.data, dtype=self.dtype)

    def zero_grad(self):
        self.grad = None

    # ----- data and backends ----------------------------------------------------------------
    @property
    def backend(self):
        return backend_of(self.data)

    @property
    def xp(self):
        """The array module of this tensor's backend (``numpy`` or ``cupy``)."""
        return self.backend.xp

    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def __getstate__(self):  # (pickle, copy.deepcopy, copy.copy): a copy is a leaf of its own, in no graph
        if self.grad_fn is not None:
            raise TypeError("only a leaf tensor (made by you, not computed) can be copied or pickled, as in "
                            "PyTorch: copy tensor.detach(), or copy the leaves it was computed from")
        grad = None if self.grad is None else self.grad.copy()  # (a shallow copy must not add into ours)
        return {"data": self.data, "requires_grad": self.requires_grad, "grad": grad, "grad_fn": None}

    def __setstate__(self, state):
        for name, value in state.items():
            setattr(self, name, value)
        self._accumulator = None

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor (a single number): use .item()")
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        """What ``np.asarray(tensor)`` gives, as in PyTorch: a copy of the data of a host tensor
        that needs no gradient. For one that does, an error (NumPy would lose the graph); for one
        on a GPU, an error too: a copy to the host is written out, ``tensor.numpy()``."""
        if self.requires_grad:
            raise TypeError("NumPy cannot take a tensor that requires grad (its graph would be lost): "
                            "use tensor.numpy() for its values, or compute under tinyres.no_grad()")
        if self.backend.name != "numpy":
            raise TypeError(f"NumPy cannot take a tensor on {self.backend.name} without a copy to the host: "
                            "use tensor.numpy(), which makes that copy")
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def numpy(self):
        """A NumPy copy of the data on the host (an explicit device-to-host transfer)."""
        return self.backend.to_numpy(self.data)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item: tensor has {self.data.size} elements, expected 1")
        return self.data.item()

    def to(self, backend):
        """A copy of this tensor on another backend (a leaf: the graph does not follow it)."""
        target = get_backend(backend)
        if target is self.backend:
            return self
        data = target.asarray(self.backend.to_numpy(self.data))
        return Tensor(data, requires_grad=self.requires_grad, dtype=self.dtype)

    def astype(self, dtype):
        """A copy with another float dtype; gradients flow back in the original dtype."""
        from tinyres.nn.functional.arithmetic import astype

        return astype(self, dtype)

    def __repr__(self):
        grad = f", grad_fn={self.grad_fn.name}" if self.grad_fn is not None else (
            ", requires_grad=True" if self.requires_grad else "")
        backend = "" if self.backend.name == "numpy" else f", backend={self.backend.name!r}"
        return f"Tensor({self.backend.to_numpy(self.data)!r}{backend}{grad})"

    # ----- operators and methods (the ops are in tinyres/nn/functional) ---------------------
    def __add__(self, other):
        return F.add(self, other)

    def __radd__(self, other):
        return F.add(other, self)

    def __sub__(self, other):
        return F.sub(self, other)

    def __rsub__(self, other):
        return F.sub(other, self)

    def __mul__(self, other):
        return F.mul(self, other)

    def __rmul__(self, other):
        return F.mul(other, self)

    def __truediv__(self, other):
        return F.div(self, other)

    def __rtruediv__(self, other):
        return F.div(other, self)

    def __neg__(self):
        return F.neg(self)

    def __pow__(self, exponent):
        return F.power(self, exponent)

    def __matmul__(self, other):
        return F.matmul(self, other)

    def __getitem__(self, index):
        return F.getitem(self, index)

    def exp(self):
        return F.exp(self)

    def log(self):
        return F.log(self)

    def relu(self):
        return F.relu(self)

    def sum(self, axis=None, keepdims=False):
        return F.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return F.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return F.max(self, axis, keepdims)

    def reshape(self, *shape):
        return F.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def transpose(self, *axes):
        return F.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))

    @property
    def T(self):
        return F.transpose(self)

    def flatten(self, start_axis=0):
        return F.flatten(self, start_axis)


def _backend_of_or_none(data):
    try:
        return backend_of(data)
    except TypeError:
        return None


from tinyres.nn import functional as F  # noqa: E402  (the ops import Tensor: import them last)
