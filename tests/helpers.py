"""Small helpers shared by the tests."""

import numpy as np

import tinyres


def tensor(backend, array, requires_grad=False, dtype="float64"):
    """A tensor on ``backend`` from host data."""
    return tinyres.Tensor(np.asarray(array), requires_grad=requires_grad, dtype=dtype, backend=backend)


def host(value):
    """NumPy copy of a tensor or a backend array."""
    if isinstance(value, tinyres.Tensor):
        return value.numpy()
    return tinyres.backend.backend_of(value).to_numpy(value)
