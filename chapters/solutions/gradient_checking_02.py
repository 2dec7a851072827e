"""Worked solution to chapter 2, exercise 5: softmax over the last axis as one op with
``Tensor.from_op``, its backward derived from the Jacobian, tested with ``check_op``."""

from tinyres.nn.functional.common import check_inputs
from tinyres.tensor import Tensor


def softmax(x):
    check_inputs("softmax", x)
    xp = x.xp
    e = xp.exp(x.data - x.data.max(axis=-1, keepdims=True))  # shifted by the row maximum: no overflow
    s = e / e.sum(axis=-1, keepdims=True)

    def backward(g):
        # ds_i/dx_j = s_i (delta_ij - s_j), so dx_j = sum_i g_i s_i (delta_ij - s_j) = s_j (g_j - sum_i g_i s_i)
        return (s * (g - (g * s).sum(axis=-1, keepdims=True)),)

    return Tensor.from_op("softmax", s, backward, x)
