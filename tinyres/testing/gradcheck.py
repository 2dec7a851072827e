"""Gradient checking: compare what ``backward`` computes with central differences.

For a function f of tensors, pick a fixed random weight tensor w and let L = sum(w * f(inputs)),
a scalar whose gradient involves every output element. For each element x_k of each input,

    numerical dL/dx_k = (L(x_k + eps) - L(x_k - eps)) / (2 eps)        (error O(eps^2))

(computed as sum(w * (f(x_k + eps) - f(x_k - eps))) / (2 eps): the outputs are subtracted before
they are weighted and summed, so a large output does not drown the small difference). It must
agree with the analytical gradient from ``L.backward()`` within ``atol + rtol * |numerical|``; a
NaN on either side is a disagreement. This only works in float64: in float32 the rounding error of L,
divided by 2 eps, swamps the derivative.
"""

import numpy as np

from tinyres.autograd import no_grad
from tinyres.backend import backend_of
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
    checked = _unique([t for t in inputs if isinstance(t, Tensor) and t.requires_grad])
    if not checked:
        not_tensors = [(i, t) for i, t in enumerate(inputs) if not isinstance(t, Tensor)]
        if not_tensors:
            i, value = not_tensors[0]
            kind = f"{type(value).__module__}.{type(value).__name__}".replace("builtins.", "")
            raise TypeError(
                f"gradcheck: input {i} is a {kind}, not a Tensor, so it has no gradient to check; wrap it: "
                "tinyres.Tensor(x, requires_grad=True, dtype='float64')"
            )
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    position = {id(t): i for i, t in reversed(list(enumerate(inputs)))}  # first place of each tensor
    for tensor in checked:
        i = position[id(tensor)]
        if tensor.dtype != np.float64:
            raise ValueError(
                f"gradcheck: input {i} is {tensor.dtype}; central differences need float64 "
                "(create it with dtype='float64')"
            )
        if tensor.grad_fn is not None:
            raise ValueError(
                f"gradcheck: input {i} was computed by an op, so backward keeps no gradient for it; "
                "pass a leaf: a tensor created directly, or x.detach() with requires_grad=True"
            )
        if not getattr(getattr(tensor.data, "flags", None), "writeable", True):
            raise ValueError(f"gradcheck: input {i}'s array is read-only; pass a writable copy (np.array(...))")
    tensors = [(i, t) for i, t in enumerate(inputs) if isinstance(t, Tensor)]
    before = [t.numpy() for _, t in tensors]

    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    if out.dtype != np.float64:
        raise ValueError(f"gradcheck: fn returned {out.dtype} from float64 inputs; central differences need float64 throughout")
    backend = out.backend
    host_weights = np.random.default_rng(seed).standard_normal(out.shape)
    weights = backend.asarray(host_weights)

    def output():
        return backend.to_numpy(fn(*inputs).data)

    for tensor in checked:
        tensor.grad = None
    (out * Tensor(weights, dtype=out.dtype)).sum().backward()
    for (k, tensor), was in zip(tensors, before):
        if not np.array_equal(was, tensor.numpy(), equal_nan=True):
            raise GradcheckError(f"gradcheck: fn changed input {k} in place")

    for tensor in checked:
        i = position[id(tensor)]
        grad = tensor.grad if tensor.grad is not None else backend.xp.zeros(tensor.shape)  # no path: zero
        analytical = backend.to_numpy(grad)
        if analytical.shape != tensor.shape:
            raise GradcheckError(f"gradcheck: gradient of input {i} has shape {analytical.shape}, input {tensor.shape}")
        numerical = np.zeros(tensor.shape)
        with no_grad():
            for index in np.ndindex(*tensor.shape):
                original = tensor.data[index].item()
                try:
                    tensor.data[index] = original + eps
                    up = output()
                    tensor.data[index] = original - eps
                    down = output()
                finally:  # the input is the caller's array: never leave it perturbed
                    tensor.data[index] = original
                # difference the outputs first, then weight: no cancellation against a large L
                numerical[index] = ((up - down) * host_weights).sum() / (2 * eps)
        error = np.abs(analytical - numerical)
        allowed = atol + rtol * np.abs(numerical)
        wrong = ~(error <= allowed)  # NaN in either gradient counts as wrong
        if np.any(wrong):
            worst = np.unravel_index(np.argmax(np.where(np.isfinite(error), error - allowed, np.inf)), error.shape)
            raise GradcheckError(
                f"gradcheck: gradient of input {i} (shape {tensor.shape}) is wrong at element "
                f"{tuple(int(k) for k in worst)}: backward gives {analytical[worst]:.8g}, central "
                f"differences give {numerical[worst]:.8g} (error {error[worst]:.3g}, allowed "
                f"{allowed[worst]:.3g}); {int(np.sum(wrong))} of {error.size} elements disagree"
            )
    _check_no_aliasing(checked)
    return True


def _unique(tensors):
    """Each tensor once (a tensor passed twice gets one, summed, gradient)."""
    seen = set()
    return [t for t in tensors if not (id(t) in seen or seen.add(id(t)))]


def _check_no_aliasing(tensors):
    """Each gradient must be an array of its own (ops may return views; the engine copies)."""
    arrays = [t.grad for t in tensors] + [t.data for t in tensors]
    for a in range(len(tensors)):
        for b in range(a + 1, len(arrays)):
            if arrays[a] is not None and _shares_memory(arrays[a], arrays[b]):
                raise GradcheckError(f"gradcheck: the gradient of checked input {a} shares memory with another array")


def _shares_memory(a, b):
    try:
        return bool(backend_of(a).xp.shares_memory(a, b))
    except (TypeError, AttributeError, NotImplementedError):  # a backend without the check
        return False
