"""``check_op``: one call that tests an op the way tinyres's own suite tests each of its ops.

A float64 gradient check alone misses a whole kind of bug: a backward that computes the right
numbers in the wrong dtype. ``grad * xp.where(x > 0, 1.0, slope)`` is exact in float64, but for
float32 input ``xp.where`` builds a float64 array (Python floats are float64), the gradient
comes back float64, and float32 training stops at the first backward. Code that calls ``numpy``
where it should call ``xp`` passes every check on the CPU and breaks on a GPU. So ``check_op``
runs, on NumPy and on the strict backend (NumPy that refuses what CuPy refuses):

1. the gradients against central differences, in float64 (``gradcheck``);
2. the op in float32: its output is float32, and backward gives every input a float32 gradient
   of the input's shape;

and checks that the strict backend computes the same values as NumPy. A gradient check shows
only that backward agrees with forward; given ``reference``, a plain NumPy function of the same
arrays (a formula or a loop, written independently of the op), it also checks forward's values.
"""

import numpy as np

from tinyres.autograd import no_grad
from tinyres.backend import get_backend
from tinyres.tensor import Tensor
from tinyres.testing.gradcheck import GradcheckError, gradcheck


def check_op(fn, arrays, grad=None, backends=("numpy", "strict"), reference=None, **gradcheck_options):
    """Check the op ``fn`` on tensors made from ``arrays``; True, or :class:`GradcheckError`
    saying which check failed, on which backend and in which dtype.

    Args:
        fn: a function of tensors returning a tensor; bind other arguments with a lambda
            (``lambda x: my_op(x, slope=0.1)``).
        arrays: NumPy arrays, one per tensor argument of ``fn``. Floating arrays become float64
            tensors for the gradient check and float32 tensors for the dtype check; integer
            arrays (class labels) stay integer tensors and get no gradient.
        grad: which of the floating inputs to differentiate (default: all of them).
        backends: the backends to run on.
        reference: optional, a function of the NumPy arrays (floating ones as float64) returning
            what ``fn`` should return; compared with the float64 output to rtol 1e-10.
        gradcheck_options: ``eps``, ``atol``, ``rtol``, ``seed``, passed to ``gradcheck``.

    >>> check_op(lambda x: (x * x).sum(axis=1), [np.random.randn(3, 4)], reference=lambda x: (x ** 2).sum(axis=1))
    True
    """
    arrays = [np.asarray(a) for a in arrays]
    floating = [a.dtype.kind == "f" for a in arrays]
    grad = floating if grad is None else [bool(g) and f for g, f in zip(grad, floating)]
    if len(grad) != len(arrays):
        raise ValueError(f"check_op: grad has {len(grad)} entries for {len(arrays)} arrays; give one per array")
    first = None  # (backend name, float64 output on the host)
    for name in backends:
        backend = get_backend(name)

        def tensors(dtype):
            return [Tensor(a, requires_grad=g, dtype=dtype if f else None, backend=backend)
                    for a, f, g in zip(arrays, floating, grad)]

        with _failing_as(f"on the {name} backend, in float64"):
            gradcheck(fn, tensors("float64"), **gradcheck_options)
            with no_grad():
                output = fn(*tensors("float64")).numpy()
        if first is None:
            first = (name, output)
            if reference is not None:
                _check_reference(output, reference(*[a.astype(np.float64) if f else a for a, f in zip(arrays, floating)]))
        elif output.shape != first[1].shape or not np.allclose(output, first[1], rtol=1e-12, atol=1e-12, equal_nan=True):
            raise GradcheckError(f"check_op: the {name} backend computes other values than the {first[0]} backend")
        with _failing_as(f"on the {name} backend, in float32"):
            _check_float32(fn, tensors("float32"))
    return True


def _check_reference(output, expected):
    """The float64 output equals what ``reference`` computes, to rtol 1e-10."""
    expected = np.asarray(expected, dtype=np.float64)
    if output.shape != expected.shape:
        raise GradcheckError(f"check_op: fn gives shape {output.shape}, the reference {expected.shape}")
    if not np.allclose(output, expected, rtol=1e-10, atol=1e-12, equal_nan=True):
        worst = np.unravel_index(np.argmax(np.abs(output - expected)), output.shape)
        raise GradcheckError(f"check_op: fn gives {output[worst]:.10g} at {tuple(int(k) for k in worst)} where the "
                             f"reference gives {expected[worst]:.10g} (float64)")


def _check_float32(fn, inputs):
    """float32 in, float32 out, float32 gradients of the inputs' shapes."""
    out = fn(*inputs)
    if out.dtype != np.float32:
        raise GradcheckError(f"fn returned {out.dtype} from float32 inputs; keep the inputs' dtype")
    seed = np.random.default_rng(0).standard_normal(out.shape).astype(np.float32)
    out.backward(out.backend.asarray(seed))
    for i, t in enumerate(inputs):
        if t.requires_grad and t.grad is not None and (t.grad.dtype != np.float32 or tuple(t.grad.shape) != t.shape):
            raise GradcheckError(f"the gradient of input {i} is {t.grad.dtype} of shape {tuple(t.grad.shape)}, "
                                 f"the input float32 of shape {t.shape}")


class _failing_as:
    """Turns a failure inside the block into a GradcheckError that says where it happened
    (engine errors about gradient dtypes and the strict backend's refusals included)."""

    def __init__(self, where):
        self.where = where

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, (GradcheckError, RuntimeError, TypeError)):
            raise GradcheckError(f"check_op {self.where}: {error}") from error
        return False
