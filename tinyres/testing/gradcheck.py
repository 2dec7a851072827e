"""Gradient checking: compare what ``backward`` computes with central differences.

For a function f of tensors, pick a fixed random weight tensor w and let L = sum(w * f(inputs)),
a scalar whose gradient involves every output element. For each element x_k of each input,

    numerical dL/dx_k = (L(x_k + eps) - L(x_k - eps)) / (2 eps)        (error O(eps^2))

and it must agree with the analytical gradient from ``L.backward()`` within
``atol + rtol * |numerical|``. This only works in float64: in float32 the rounding error of L,
divided by 2 eps, swamps the derivative.
"""

import numpy as np

from tinyres.autograd import no_grad
from tinyres.tensor import Tensor


class GradcheckError(AssertionError):
    """A gradient that disagrees with its numerical estimate; the message says where."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Check the gradients of ``fn(*inputs)`` w.r.t. every input that requires grad.

    Args:
        fn: a function of the tensors in ``inputs`` returning a tensor.
        inputs: tensors; those with ``requires_grad=True`` are checked; all float64.
    Returns:
        True. Raises :class:`GradcheckError` naming the input, the element, both values and
        the error when a gradient is wrong, and ValueError for float32 inputs.

    >>> x = tinyres.Tensor(np.random.randn(3, 4), requires_grad=True, dtype="float64")
    >>> tinyres.gradcheck(lambda x: (x * x).sum(axis=1), [x])
    True
    """
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise ValueError(
                f"gradcheck: input {i} is {inputs[i].dtype}; central differences need float64 "
                "(create it with dtype='float64')"
            )
    before = [t.numpy() for t in inputs if isinstance(t, Tensor)]

    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    backend = out.backend
    weights = backend.asarray(np.random.default_rng(seed).standard_normal(out.shape))

    def loss():
        return float((fn(*inputs).data * weights).sum())

    for i in checked:
        inputs[i].grad = None
    (out * Tensor(weights, dtype=out.dtype)).sum().backward()
    after = [t.numpy() for t in inputs if isinstance(t, Tensor)]
    for k, (a, b) in enumerate(zip(before, after)):
        if not np.array_equal(a, b):
            raise GradcheckError(f"gradcheck: fn changed input {k} in place")

    for i in checked:
        tensor = inputs[i]
        if tensor.grad is None:
            raise GradcheckError(f"gradcheck: input {i} got no gradient although it requires one")
        analytical = backend.to_numpy(tensor.grad)
        if analytical.shape != tensor.shape:
            raise GradcheckError(f"gradcheck: gradient of input {i} has shape {analytical.shape}, input {tensor.shape}")
        numerical = np.zeros(tensor.shape)
        with no_grad():
            for index in np.ndindex(*tensor.shape):
                original = tensor.data[index].item()
                tensor.data[index] = original + eps
                up = loss()
                tensor.data[index] = original - eps
                down = loss()
                tensor.data[index] = original
                numerical[index] = (up - down) / (2 * eps)
        error = np.abs(analytical - numerical)
        allowed = atol + rtol * np.abs(numerical)
        if np.any(error > allowed) or not np.all(np.isfinite(analytical)):
            worst = np.unravel_index(np.argmax(np.where(np.isfinite(error), error - allowed, np.inf)), error.shape)
            raise GradcheckError(
                f"gradcheck: gradient of input {i} (shape {tensor.shape}) is wrong at element "
                f"{tuple(int(k) for k in worst)}: backward gives {analytical[worst]:.8g}, central "
                f"differences give {numerical[worst]:.8g} (error {error[worst]:.3g}, allowed "
                f"{allowed[worst]:.3g}); {int(np.sum(error > allowed))} of {error.size} elements disagree"
            )
    _check_no_aliasing([inputs[i] for i in checked])
    return True


def _check_no_aliasing(tensors):
    """Each gradient must be an array of its own (ops may return views; the engine copies)."""
    arrays = [t.grad for t in tensors] + [t.data for t in tensors]
    for a in range(len(tensors)):
        for b in range(a + 1, len(arrays)):
            if isinstance(arrays[a], np.ndarray) and isinstance(arrays[b], np.ndarray) and np.shares_memory(arrays[a], arrays[b]):
                raise GradcheckError(f"gradcheck: the gradient of checked input {a} shares memory with another array")
