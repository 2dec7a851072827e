"""Reductions: sum, mean and max over some axes.

The backward of a reduction spreads each output gradient back over the elements that were
reduced into it: all of them equally for sum (and mean, divided by their number), only the
maximal ones for max.
"""

import numbers

from tinyres.nn.functional.common import check_inputs
from tinyres.tensor import Tensor


def _axes(axis, ndim, op):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{op}: axis {a} is out of range for a {ndim}-D tensor")
    return tuple(sorted(a % ndim for a in axes))


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def sum(x, axis=None, keepdims=False):  # noqa: A001 (mirrors numpy's name)
    check_inputs("sum", x)
    axes = _axes(axis, x.ndim, "sum")
    shape, xp = x.shape, x.xp  # (not x itself: the closure would keep its data alive)

    def backward(g):  # every summed element gets the output's gradient
        return (xp.broadcast_to(g.reshape(_keepdims_shape(shape, axes)), shape),)

    return Tensor.from_op("sum", x.data.sum(axis=axes, keepdims=keepdims), backward, x)


def mean(x, axis=None, keepdims=False):
    check_inputs("mean", x)
    axes = _axes(axis, x.ndim, "mean")
    shape, xp = x.shape, x.xp
    count = 1
    for a in axes:
        count *= shape[a]

    def backward(g):  # every averaged element gets 1/count of the output's gradient
        return (xp.broadcast_to(g.reshape(_keepdims_shape(shape, axes)) / count, shape),)

    return Tensor.from_op("mean", x.data.mean(axis=axes, keepdims=keepdims), backward, x)


def max(x, axis=None, keepdims=False):  # noqa: A001
    """Maximum over ``axes``; where k elements tie for the maximum, each gets 1/k of its
    gradient (a valid subgradient; for two tied elements it is also the central-difference
    slope, 1/2). A NaN is the maximum of its row and takes the gradient, as in PyTorch and in
    ``max_pool2d``."""
    check_inputs("max", x)
    axes = _axes(axis, x.ndim, "max")
    data, xp = x.data, x.xp
    out = data.max(axis=axes, keepdims=True)

    def backward(g):  # dx = g at the maximal elements (shared among ties), 0 elsewhere
        is_max = ((data == out) | (xp.isnan(data) & xp.isnan(out))).astype(data.dtype)
        share = is_max / is_max.sum(axis=axes, keepdims=True)
        return (g.reshape(out.shape) * share,)

    return Tensor.from_op("max", out if keepdims else out.reshape(
        [n for i, n in enumerate(data.shape) if i not in axes]), backward, x)
