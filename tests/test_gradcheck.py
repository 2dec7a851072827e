"""The gradient checker is checked: each test gives ``gradcheck`` or ``check_op`` an op with one
kind of wrong backward (the mistakes students make, and subtler ones) and requires it to be
caught, and the same op with the right backward to pass. A checker that weighted the outputs
uniformly, checked only the first input, or tolerated a 1% error would fail here."""

import numpy as np
import pytest

import tinyres
from tinyres import Tensor
from tinyres.testing import GradcheckError, check_op, gradcheck

A = np.array([[1.0, 2.0, -1.0], [0.5, -3.0, 2.0], [4.0, 1.0, 0.25]])  # not symmetric


def leaf(values):
    return Tensor(np.array(values, dtype=np.float64), requires_grad=True, dtype="float64")


def square(x, mistake=None):
    """x^2, whose gradient is 2x g; ``mistake`` changes only the backward."""
    d = x.data

    def backward(g):
        if mistake == "ignores g":  # the local derivative alone, as if g were 1
            return (2 * d,)
        if mistake == "1% off":
            return (2.02 * d * g,)
        if mistake == "one border element":
            wrong = 2 * d * g
            wrong[-1, -1] += 1e-3
            return (wrong,)
        return (2 * d * g,)

    return Tensor.from_op("square", d * d, backward, x)


def times(x, y, mistake=None):
    """x * y elementwise; ``mistake="second input"`` doubles y's gradient only."""
    dx, dy = x.data, y.data
    return Tensor.from_op("times", dx * dy, lambda g: (g * dy, (2 if mistake == "second input" else 1) * g * dx), x, y)


def right_times_a(x, mistake=None):
    """X @ A, whose input gradient is G @ A^T; ``mistake="transposed"`` forgets the transpose
    (the shapes still fit: A is square)."""
    a = x.backend.asarray(A.astype(x.dtype))
    return Tensor.from_op("right_times_a", x.data @ a, lambda g: (g @ (a if mistake == "transposed" else a.T),), x)


X = np.array([[0.5, -1.25, 2.0], [1.5, 0.75, -0.5], [-2.0, 1.0, 0.25]])
Y = np.array([[1.0, -0.5, 3.0], [0.25, 2.0, -1.5], [1.5, -2.5, 0.5]])
CASES = {  # mistake -> (op, input arrays)
    "ignores g": (square, [X]),
    "1% off": (square, [X]),
    "one border element": (square, [X]),
    "second input": (times, [X, Y]),
    "transposed": (right_times_a, [X]),
}


@pytest.mark.parametrize("mistake", list(CASES))
def test_gradcheck_catches_the_mistake_and_passes_the_op_without_it(mistake):
    op, arrays = CASES[mistake]
    assert gradcheck(op, [leaf(a) for a in arrays])
    with pytest.raises(GradcheckError, match="is wrong at element"):
        gradcheck(lambda *t: op(*t, mistake=mistake), [leaf(a) for a in arrays])


def test_gradcheck_names_the_input_whose_gradient_is_wrong():
    with pytest.raises(GradcheckError, match=r"gradient of input 1 \(shape \(3, 3\)\) is wrong"):
        gradcheck(lambda x, y: times(x, y, mistake="second input"), [leaf(X), leaf(Y)])
    with pytest.raises(GradcheckError, match=r"is wrong at element \(2, 2\)"):  # the one wrong element
        gradcheck(lambda x: square(x, mistake="one border element"), [leaf(X)])


@pytest.mark.parametrize("mistake", list(CASES))
def test_check_op_catches_the_mistake_in_float64_on_the_first_backend(mistake):
    op, arrays = CASES[mistake]
    assert check_op(op, arrays)
    with pytest.raises(GradcheckError, match="check_op on the numpy backend, in float64: gradcheck: gradient of input"):
        check_op(lambda *t: op(*t, mistake=mistake), arrays)


def test_check_op_catches_a_backend_that_computes_other_values():
    def depends_on_the_backend(x):  # the kind of bug an `if backend is numpy` branch makes
        shift = 0.0 if x.backend.name == "numpy" else 1e-3
        return Tensor.from_op("shifted", x.data + shift, lambda g: (g,), x)

    with pytest.raises(GradcheckError, match="the strict backend computes other values than the numpy backend"):
        check_op(depends_on_the_backend, [X])


def test_the_aliasing_check_catches_a_gradient_that_shares_memory():
    # the engine gives every gradient an array of its own; this check guards that promise
    from tinyres.testing.gradcheck import _check_no_aliasing

    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    a.grad = b.grad = np.ones(2)  # one array for two gradients
    with pytest.raises(GradcheckError, match="shares memory with another array"):
        _check_no_aliasing([a, b])
    a.grad, b.grad = a.data[::-1], np.ones(2)  # a view of the input's own array
    with pytest.raises(GradcheckError, match="gradient of checked input 0 shares memory"):
        _check_no_aliasing([a, b])
    a.grad = np.ones(2)
    _check_no_aliasing([a, b])  # separate arrays pass


def test_gradcheck_refuses_inputs_it_cannot_check():
    with pytest.raises(ValueError, match="no input has requires_grad=True, nothing to check"):
        gradcheck(lambda x: x * 2.0, [Tensor(X, dtype="float64")])
    with pytest.raises(TypeError, match="input 0 is a numpy.ndarray, not a Tensor.*wrap it"):
        gradcheck(lambda x: x, [X])
    frozen = X.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="input 0's array is read-only; pass a writable copy"):
        gradcheck(lambda x: x * 2.0, [Tensor(frozen, requires_grad=True, dtype="float64")])
    with pytest.raises(TypeError, match="fn must return a Tensor, got float"):
        gradcheck(lambda x: 1.0, [leaf(X)])


def test_a_correct_op_with_broadcasting_and_reductions_passes():
    # the checker must not reject what is right: a mix of broadcasting, reduction and a nonlinearity
    x, b = leaf(X), leaf([[0.5, -1.0, 2.0]])
    assert gradcheck(lambda x, b: tinyres.nn.functional.relu(x * b + 0.1).sum(axis=0), [x, b])


def test_check_op_with_a_reference_catches_a_wrong_forward_that_backward_agrees_with():
    # forward and backward wrong together (x^2 + x, its derivative 2x + 1) pass every gradient
    # check; only the forward's values against an independent formula show the mistake
    def off_square(x):
        d = x.data
        return Tensor.from_op("square", d * d + d, lambda g: ((2 * d + 1) * g,), x)

    assert check_op(off_square, [X])
    assert check_op(square, [X], reference=lambda x: x ** 2)
    with pytest.raises(GradcheckError, match=r"fn gives .* where the reference gives"):
        check_op(off_square, [X], reference=lambda x: x ** 2)
    with pytest.raises(GradcheckError, match=r"fn gives shape \(3, 3\), the reference \(3,\)"):
        check_op(square, [X], reference=lambda x: (x ** 2).sum(axis=0))
    assert check_op(times, [X, Y], reference=lambda x, y: x * y)  # one argument per array
