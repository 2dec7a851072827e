"""Dropout (Srivastava et al., 2014), the "inverted" variant: scale at training time."""

from tinyres.nn.functional.common import check_inputs
from tinyres.tensor import Tensor


def dropout(x, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the survivors by 1/(1-p), so the
    expected value is unchanged and evaluation needs no rescaling. Identity when not training.
    The random mask comes from the seeded generator of the tensor's backend."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    check_inputs("dropout", x)
    keep = x.backend.rng.uniform(x.shape, x.dtype) >= p
    mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - p))

    def backward(g):  # d(x * mask) = mask dx
        return (g * mask,)

    return Tensor.from_op("dropout", x.data * mask, backward, x)
