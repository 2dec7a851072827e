"""ReLU, the nonlinearity of every residual network."""

from tinyres.nn.functional.common import check_inputs
from tinyres.tensor import Tensor


def relu(x):
    """max(x, 0), elementwise."""
    check_inputs("relu", x)
    out = x.xp.maximum(x.data, 0)

    def backward(g):  # d relu(x) = [x > 0] dx   (= [out > 0]; out is kept anyway by the next layer)
        return (g * (out > 0),)

    return Tensor.from_op("relu", out, backward, x)
