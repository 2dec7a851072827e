"""Worked solution to chapter 1, exercise 5: logaddexp(a, b) = log(e^a + e^b), elementwise, as one
op of the engine (its forward, its backward and ``Tensor.from_op``), for inputs that may broadcast
against each other."""

from tinyres.nn.functional.common import check_inputs, unbroadcast
from tinyres.tensor import Tensor


def logaddexp(a, b):
    check_inputs("logaddexp", a, b)
    xp, a_data, b_data = a.xp, a.data, b.data
    # log(e^a + e^b) = max(a, b) + log(1 + e^-|a - b|): exp only ever sees a number <= 0
    out = xp.maximum(a_data, b_data) + xp.log1p(xp.exp(-xp.abs(a_data - b_data)))

    def backward(g):  # d out / d a = e^a / (e^a + e^b) = e^(a - out), and likewise for b
        da = g * xp.exp(a_data - out)
        db = g * xp.exp(b_data - out)
        return unbroadcast(da, a_data.shape), unbroadcast(db, b_data.shape)

    return Tensor.from_op("logaddexp", out, backward, a, b)
