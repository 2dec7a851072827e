"""Ops that move values around without changing them: reshape, transpose, flatten, pad,
slicing and concatenation. Their backward moves the gradient back the same way."""

import math
import numbers

from tinyres.nn.functional.common import check_inputs
from tinyres.tensor import Tensor


def reshape(x, shape):
    shape = tuple(shape)
    try:
        out = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {shape}") from None
    in_shape = x.shape

    def backward(g):  # same values, old shape
        return (g.reshape(in_shape),)

    return Tensor.from_op("reshape", out, backward, x)


def transpose(x, axes=None):
    """Permute axes (reverse them when ``axes`` is None), like ``numpy.transpose``."""
    if axes is not None and any(not -x.ndim <= a < x.ndim for a in axes):
        raise ValueError(f"transpose: axes {tuple(axes)} are out of range for a {x.ndim}-D tensor")
    axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(a % x.ndim for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of a {x.ndim}-D tensor's axes")
    inverse = tuple(sorted(range(x.ndim), key=axes.__getitem__))

    def backward(g):  # undo the permutation
        return (g.transpose(inverse),)

    return Tensor.from_op("transpose", x.data.transpose(axes), backward, x)


def flatten(x, start_axis=0):
    """Merge the axes from ``start_axis`` on into one: (N, C, H, W) -> (N, C*H*W) for 1."""
    return reshape(x, x.shape[:start_axis] + (math.prod(x.shape[start_axis:]),))  # (not -1: an empty batch has no size to infer)


def pad(x, pad_width, value=0.0):
    """Pad with a constant; ``pad_width`` is one (before, after) pair per axis, as in NumPy."""
    check_inputs("pad", x)
    pad_width = tuple((int(before), int(after)) for before, after in pad_width)
    if len(pad_width) != x.ndim or any(b < 0 or a < 0 for b, a in pad_width):
        raise ValueError(f"pad: need {x.ndim} non-negative (before, after) pairs, got {pad_width}")
    inner = tuple(slice(before, before + n) for (before, _), n in zip(pad_width, x.shape))
    out = x.xp.full(tuple(n + b + a for n, (b, a) in zip(x.shape, pad_width)), value, dtype=x.dtype)
    out[inner] = x.data

    def backward(g):  # the padding was constant: only the inner part has a gradient
        return (g[inner],)

    return Tensor.from_op("pad", out, backward, x)


def getitem(x, index):
    """Basic indexing and strided slicing: ints, slices with steps, ``None`` and ``...``.

    ``x[:, :, ::2, ::2]`` is the paper's option-A shortcut subsampling. Indexing with arrays is
    refused: its backward needs a scatter-add that repeated indices would get wrong.
    """
    parts = index if isinstance(index, tuple) else (index,)
    for part in parts:
        if not (part is None or part is Ellipsis or isinstance(part, (slice, numbers.Integral))):
            raise TypeError(
                f"getitem: only ints, slices, None and ... are supported, got {type(part).__name__}"
            )
    out = x.data[index]
    shape, dtype, xp = x.shape, x.dtype, x.xp

    def backward(g):  # the picked elements get their gradient, the others zero
        full = xp.zeros(shape, dtype=dtype)
        full[index] = g
        return (full,)

    return Tensor.from_op("getitem", out, backward, x)


def concat(tensors, axis=0):
    """Join tensors along an existing axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat: need at least one tensor")
    check_inputs("concat", *tensors)
    if not -tensors[0].ndim <= axis < tensors[0].ndim:
        raise ValueError(f"concat: axis {axis} is out of range for {tensors[0].ndim}-D tensors")
    axis = axis % tensors[0].ndim
    for t in tensors[1:]:
        if t.ndim != tensors[0].ndim or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, tensors[0].shape)) if i != axis
        ):
            raise ValueError(
                f"concat: shapes {[t.shape for t in tensors]} differ outside axis {axis}"
            )
    sizes = [t.shape[axis] for t in tensors]
    out = tensors[0].xp.concatenate([t.data for t in tensors], axis=axis)

    def backward(g):  # cut the gradient back into the pieces
        grads, start = [], 0
        for size in sizes:
            index = (slice(None),) * axis + (slice(start, start + size),)
            grads.append(g[index])
            start += size
        return tuple(grads)

    return Tensor.from_op("concat", out, backward, *tensors)
