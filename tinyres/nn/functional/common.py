"""What every op needs besides its math: checking its inputs, and undoing broadcasting.

Layout convention for feature maps: tensors have the NCHW *shape* (batch, channels, height,
width) that PyTorch users expect, but the ops that create feature maps (conv2d, batch_norm,
pooling) store them *channel-major* in memory, as a C-contiguous (C, N, H, W) array viewed
through ``.transpose(1, 0, 2, 3)``. Then the (C, N*H*W) matrix that im2col-based convolution
and per-channel statistics want is a free reshape instead of a copy; see ``conv.py`` for the
measurements behind this choice. Any other layout is still accepted (it is copied once).
"""

import numbers

import numpy as np

from tinyres.tensor import Tensor


def check_inputs(op, *tensors):
    """All tensors on one backend and of one floating dtype, else an error naming ``op``."""
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected tinyres Tensors, got a {type(t).__module__}.{type(t).__name__}; "
                            "wrap arrays with tinyres.Tensor(array) (requires_grad=True for weights)")
    backends = {t.backend.name for t in tensors}
    if len(backends) > 1:
        raise ValueError(
            f"{op}: inputs live on different backends ({' and '.join(sorted(backends))}); "
            "move them to one with .to(...) (Module.to(...) for a whole model)"
        )
    dtypes = {t.dtype for t in tensors}
    for t in tensors:
        if t.dtype.kind != "f":
            raise TypeError(f"{op}: expected floating tensors, got dtype {t.dtype}")
    if len(dtypes) > 1:
        raise TypeError(
            f"{op}: inputs have different dtypes ({' and '.join(sorted(map(str, dtypes)))}); "
            "convert one with .astype(...) (tinyres never upcasts silently)"
        )


def as_tensor(value, like):
    """Turn a Python number or an array into a constant tensor that can meet ``like``."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, numbers.Number) or (isinstance(value, np.generic) and value.ndim == 0):
        return Tensor(like.xp.asarray(value, dtype=like.dtype), dtype=like.dtype)
    return Tensor(value, dtype=like.dtype)


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting.

    Broadcasting copies an input along new leading axes and along axes of length 1, so its
    gradient adds up the gradients of all the copies.
    """
    if tuple(grad.shape) == tuple(shape):
        return grad
    leading = grad.ndim - len(shape)
    if leading:
        grad = grad.sum(axis=tuple(range(leading)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def pair(value, name, op):
    """``3 -> (3, 3)``; ``(2, 1)`` stays; anything else is an error naming ``op``."""
    if isinstance(value, numbers.Integral):
        value = (int(value), int(value))
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, numbers.Integral) for v in value)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in value)


def channel_major(array):
    """(N, C, H, W) array -> its (C, N, H, W) view (never a copy)."""
    return array.transpose(1, 0, 2, 3)


def channel_matrix(array):
    """(N, C, H, W) array -> the (C, N*H*W) matrix of its values, a free view when the array is
    stored channel-major (see the module docstring), a copy otherwise."""
    return channel_major(array).reshape(array.shape[1], -1)


def check_feature_map(op, x, name="input"):
    if x.ndim != 4:
        raise ValueError(
            f"{op}: {name} must be 4-D (batch, channels, height, width), got shape {x.shape}"
        )


def split(count, parts):
    """``count`` indices as up to ``parts`` contiguous slices of near-equal size: how ops share
    big arrays (by channel) among the workers of ``backend.parallel_map``."""
    parts = max(1, min(parts, count))
    bounds = [round(k * count / parts) for k in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]
