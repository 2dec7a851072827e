"""Elementwise arithmetic, exp, log, matmul and dtype casts.

Each op computes its output, then defines ``backward``: given g = dL/d(output), return
dL/d(input) for each input, by the chain rule. Inputs may broadcast against each other; their
gradients are summed back to their own shapes with ``unbroadcast``. Backward functions capture
only what they need (shapes for add, operands for mul), so nothing else is kept alive.
"""

import numpy as np

from tinyres.nn.functional.common import as_tensor, check_inputs, unbroadcast
from tinyres.tensor import FLOAT_DTYPES, Tensor


def _operands(op, a, b):
    like = a if isinstance(a, Tensor) else b
    a, b = as_tensor(a, like), as_tensor(b, like)
    check_inputs(op, a, b)
    return a, b


def add(a, b):
    a, b = _operands("add", a, b)
    a_shape, b_shape = a.shape, b.shape

    def backward(g):  # d(a + b) = da + db
        return unbroadcast(g, a_shape), unbroadcast(g, b_shape)

    return Tensor.from_op("add", a.data + b.data, backward, a, b)


def sub(a, b):
    a, b = _operands("sub", a, b)
    a_shape, b_shape = a.shape, b.shape

    def backward(g):  # d(a - b) = da - db
        return unbroadcast(g, a_shape), unbroadcast(-g, b_shape)

    return Tensor.from_op("sub", a.data - b.data, backward, a, b)


def mul(a, b):
    a, b = _operands("mul", a, b)
    a_data, b_data = a.data, b.data

    def backward(g):  # d(a * b) = b da + a db
        return unbroadcast(g * b_data, a_data.shape), unbroadcast(g * a_data, b_data.shape)

    return Tensor.from_op("mul", a_data * b_data, backward, a, b)


def div(a, b):
    a, b = _operands("div", a, b)
    a_shape, b_data = a.shape, b.data
    out = a.data / b_data

    def backward(g):  # d(a / b) = da / b - (a / b^2) db = da / b - (out / b) db
        da = g / b_data
        return unbroadcast(da, a_shape), unbroadcast(-da * out, b_data.shape)

    return Tensor.from_op("div", out, backward, a, b)


def neg(x):
    def backward(g):  # d(-x) = -dx
        return (-g,)

    return Tensor.from_op("neg", -x.data, backward, x)


def power(x, exponent):
    """``x ** exponent`` for a constant number ``exponent``."""
    if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float, np.number)):
        raise TypeError(f"power: the exponent must be a number, got {type(exponent).__name__}")
    check_inputs("power", x)
    exponent = exponent.item() if isinstance(exponent, np.number) else exponent  # a NumPy float64 would upcast x
    data = x.data

    def backward(g):  # d(x^p) = p x^(p-1) dx   (and 0 for p = 0, where x^(p-1) may be infinite)
        if exponent == 0:
            return (g * 0,)
        return (g * (exponent * data ** (exponent - 1)),)

    return Tensor.from_op("power", data**exponent, backward, x)


def exp(x):
    check_inputs("exp", x)
    out = x.xp.exp(x.data)

    def backward(g):  # d(e^x) = e^x dx
        return (g * out,)

    return Tensor.from_op("exp", out, backward, x)


def log(x):
    check_inputs("log", x)
    data = x.data

    def backward(g):  # d(log x) = dx / x
        return (g / data,)

    return Tensor.from_op("log", x.xp.log(data), backward, x)


def matmul(a, b):
    """Matrix product of the last two axes, broadcasting the leading ones (both at least 2-D)."""
    check_inputs("matmul", a, b)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} do not multiply; both must be at least 2-D "
            "and the last axis of the first must equal the second-to-last axis of the second"
        )
    a_data, b_data = a.data, b.data

    def backward(g):  # C = A B:  dA = dC B^T,  dB = A^T dC
        da = g @ b_data.swapaxes(-1, -2)
        db = a_data.swapaxes(-1, -2) @ g
        return unbroadcast(da, a_data.shape), unbroadcast(db, b_data.shape)

    return Tensor.from_op("matmul", a_data @ b_data, backward, a, b)


def astype(x, dtype):
    """A copy of ``x`` as float32 or float64; the gradient is cast back."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"astype: tinyres computes in float32 or float64, got {dtype}; use one of those")
    source = x.dtype

    def backward(g):  # the identity, in the input's dtype
        return (g.astype(source),)

    return Tensor.from_op("astype", x.data.astype(dtype), backward, x)
