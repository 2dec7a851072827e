"""Weight initialisation.

The ResNet paper initialises "as in [13]", He et al. 2015, "Delving Deep into Rectifiers": a
zero-mean Gaussian with standard deviation sqrt(2 / n), n = k*k*c the number of inputs of each
output unit (fan-in). With ReLU halving the second moment at every layer, this keeps the variance
of the activations constant with depth, so deep plain nets start out trainable at all.
"""

import math

from tinyres.backend import get_backend
from tinyres.tensor import Tensor


def kaiming_normal(shape, fan_in, dtype="float32", backend="numpy"):
    """A trainable tensor of N(0, 2 / fan_in) samples drawn from ``backend``'s seeded generator."""
    backend = get_backend(backend)
    data = backend.rng.normal(shape, dtype) * backend.xp.asarray(math.sqrt(2.0 / fan_in), dtype=dtype)
    return Tensor(data, requires_grad=True)


def constant(shape, value, dtype="float32", backend="numpy"):
    """A trainable tensor filled with ``value``."""
    backend = get_backend(backend)
    return Tensor(backend.xp.full(shape, value, dtype=dtype), requires_grad=True)
