"""The fully connected layer: y = x W^T + b."""

from tinyres.nn.functional.common import check_inputs
from tinyres.tensor import Tensor


def linear(x, weight, bias=None):
    """x: (N, in_features); weight: (out_features, in_features); bias: (out_features,)."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    check_inputs("linear", *tensors)
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"linear: input {x.shape} and weight {weight.shape} do not fit; need input "
            "(N, in_features) and weight (out_features, in_features)"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    x_data, w_data = x.data, weight.data
    out = x_data @ w_data.T
    if bias is not None:
        out += bias.data

    def backward(g):  # y = x W^T + b:  dx = g W,  dW = g^T x,  db = sum_n g
        dx = g @ w_data
        dw = g.T @ x_data
        return (dx, dw) if bias is None else (dx, dw, g.sum(axis=0))

    return Tensor.from_op("linear", out, backward, *tensors)
