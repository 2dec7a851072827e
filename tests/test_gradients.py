"""Every differentiable op, checked against central differences on random inputs (float64).

Each test is one property: "the gradient backward computes for <op> equals the numerical
derivative", over shapes, axes, strides and paddings drawn by hypothesis.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyres
import tinyres.nn.functional as F
from tinyres.testing import check_op
from tinyres.testing import strategies as tst
from tests.helpers import tensor


def check(backend, fn, *arrays, grad=None):
    """gradcheck fn over tensors made from arrays; ``grad`` says which ones need gradients."""
    grad = grad or [True] * len(arrays)
    inputs = [tensor(backend, a, requires_grad=g) for a, g in zip(arrays, grad)]
    assert tinyres.gradcheck(fn, inputs)


def broadcastable_pair():
    """Two shapes that broadcast against each other: either one, or both, may be stretched
    ((3, 1) with (1, 4), (2, 3) with (3,), (3,) with (2, 3), ...)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=4).map(
        lambda shapes: shapes.input_shapes)


@given(broadcastable_pair().flatmap(lambda s: st.tuples(tst.arrays(s[0]), tst.arrays(s[1]))))
def test_add_sub_mul_gradients_sum_over_broadcast_axes(backend, pair):
    a, b = pair
    check(backend, lambda x, y: x + y, a, b)
    check(backend, lambda x, y: y - x, a, b)
    check(backend, lambda x, y: x * y, a, b)


@given(broadcastable_pair().flatmap(lambda s: st.tuples(tst.arrays(s[0]), tst.arrays(s[1], 0.5, 2.0))))
def test_div_gradient(backend, pair):
    a, b = pair
    check(backend, lambda x, y: x / y, a, b)
    check(backend, lambda y: 1.5 / y, b)


@given(tst.arrays(tst.shapes()), st.sampled_from([2, 3, -1, 0.5]))
def test_neg_power_gradients(backend, x, exponent):
    check(backend, lambda t: -t, x)
    check(backend, lambda t: (t * t + 0.5) ** exponent, x)


@given(tst.arrays(tst.shapes()))
def test_exp_log_gradients(backend, x):
    check(backend, lambda t: t.exp(), x)
    check(backend, lambda t: (t * t + 0.1).log(), x)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4),
       st.sampled_from([((), ()), ((2,), ()), ((3, 1), ()), ((), (2,)), ((1,), (3,)), ((2, 1), (3,))]), st.data())
def test_matmul_gradient_with_batch_broadcasting(backend, n, k, m, batches, data):
    # batch dimensions on either side, or on both, broadcast against each other
    a = data.draw(tst.arrays(batches[0] + (n, k)))
    b = data.draw(tst.arrays(batches[1] + (k, m)))
    check(backend, lambda x, y: x @ y, a, b)


def axis_choices(ndim):
    return st.one_of(st.none(), st.integers(-ndim, ndim - 1), st.sets(st.integers(0, ndim - 1), min_size=1).map(tuple))


@given(tst.arrays(tst.shapes()).flatmap(lambda x: st.tuples(st.just(x), axis_choices(x.ndim), st.booleans())))
def test_sum_and_mean_gradients_for_any_axes(backend, case):
    x, axis, keepdims = case
    check(backend, lambda t: t.sum(axis=axis, keepdims=keepdims), x)
    check(backend, lambda t: t.mean(axis=axis, keepdims=keepdims), x)


@given(tst.arrays(tst.shapes(max_dims=3, max_side=4), spaced=True).flatmap(
    lambda x: st.tuples(st.just(x), axis_choices(x.ndim), st.booleans())))
def test_max_gradient_goes_to_the_maximum(backend, case):
    x, axis, keepdims = case
    check(backend, lambda t: t.max(axis=axis, keepdims=keepdims), x)


def test_max_splits_the_gradient_between_ties(backend):
    x = tensor(backend, [[1.0, 3.0, 3.0]], requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad if isinstance(x.grad, np.ndarray) else backend.to_numpy(x.grad), [[0, 0.5, 0.5]])


@given(tst.arrays(tst.shapes(min_dims=2, max_dims=4)), st.data())
def test_reshape_transpose_flatten_gradients(backend, x, data):
    axes = tuple(data.draw(st.permutations(range(x.ndim))))
    check(backend, lambda t: t.transpose(axes), x)
    check(backend, lambda t: t.reshape(-1, x.shape[-1]), x)
    check(backend, lambda t: t.flatten(1) * 2.0, x)


@given(tst.arrays(tst.shapes(max_dims=4, max_side=4)), st.data())
def test_pad_gradient(backend, x, data):
    widths = [(data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in range(x.ndim)]
    check(backend, lambda t: F.pad(t, widths, value=0.5), x)


@given(tst.arrays(tst.shapes(min_dims=2, max_dims=4, max_side=6)), st.data())
def test_strided_slicing_gradient(backend, x, data):
    index = tuple(
        slice(data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n)), data.draw(st.integers(1, 3)))
        for n in x.shape
    )
    if data.draw(st.booleans()):
        index = (data.draw(st.integers(0, x.shape[0] - 1)),) + index[1:]
    check(backend, lambda t: t[index] * 3.0, x)


def test_option_a_shortcut_subsample_and_zero_pad_channels(backend):
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    check(backend, lambda t: F.pad(t[:, :, ::2, ::2], [(0, 0), (2, 1), (0, 0), (0, 0)]), x)


@given(st.integers(1, 3), st.integers(0, 2), st.data())
def test_concat_gradient(backend, pieces, axis, data):
    shape = [2, 3, 2]
    arrays = []
    for _ in range(pieces):
        shape_i = list(shape)
        shape_i[axis] = data.draw(st.integers(1, 3))
        arrays.append(data.draw(tst.arrays(tuple(shape_i))))
    check(backend, lambda *ts: F.concat(ts, axis=axis), *arrays)


@given(tst.arrays(tst.shapes(max_side=4), spaced=True))
def test_relu_gradient(backend, x):
    check(backend, F.relu, x)


@given(tst.conv_geometries(), st.booleans(), st.sampled_from([(True, True), (False, True), (True, False)]), st.data())
def test_conv2d_gradient_any_kernel_stride_padding(backend, g, with_bias, needs, data):
    # needs: which of input and weight want a gradient (a first layer's input does not, a frozen
    # layer's weight does not: conv's backward skips each then)
    x = data.draw(tst.arrays((g.batch, g.in_channels, g.height, g.width)))
    w = data.draw(tst.arrays((g.out_channels, g.in_channels) + g.kernel_size))
    b = data.draw(tst.arrays((g.out_channels,)))
    if with_bias:
        check(backend, lambda x, w, b: F.conv2d(x, w, b, g.stride, g.padding), x, w, b, grad=[*needs, True])
    else:
        check(backend, lambda x, w: F.conv2d(x, w, None, g.stride, g.padding), x, w, grad=list(needs))


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.booleans(), st.data())
def test_batch_norm_gradient_in_training_and_evaluation(backend, n, c, h, w, training, data):
    if training and n * h * w < 2:
        n = 2
    x = data.draw(tst.arrays((n, c, h, w)))
    gamma = data.draw(tst.arrays((c,), 0.5, 2.0))
    beta = data.draw(tst.arrays((c,)))
    running_mean = backend.asarray(data.draw(tst.arrays((c,))))
    running_var = backend.asarray(data.draw(tst.arrays((c,), 0.5, 2.0)))
    # momentum 0 keeps the running statistics fixed while gradcheck calls the op many times
    check(backend, lambda x, g_, b_: F.batch_norm(x, running_mean, running_var, g_, b_, training, momentum=0.0), x, gamma, beta)


@given(tst.pool_geometries(), st.data())
def test_max_pool2d_gradient(backend, g, data):
    x = data.draw(tst.arrays((g.batch, g.channels, g.height, g.width), -4, 4, spaced=True))
    check(backend, lambda t: F.max_pool2d(t, g.kernel_size, g.stride, g.padding), x)


@given(tst.pool_geometries(), st.data())
def test_avg_pool2d_gradient(backend, g, data):
    x = data.draw(tst.arrays((g.batch, g.channels, g.height, g.width)))
    check(backend, lambda t: F.avg_pool2d(t, g.kernel_size, g.stride, g.padding), x)


@given(tst.arrays(tst.shapes(min_dims=4, max_dims=4, max_side=4)))
def test_global_avg_pool2d_gradient(backend, x):
    check(backend, F.global_avg_pool2d, x)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.booleans(), st.data())
def test_linear_gradient(backend, n, fan_in, fan_out, with_bias, data):
    x = data.draw(tst.arrays((n, fan_in)))
    w = data.draw(tst.arrays((fan_out, fan_in)))
    b = data.draw(tst.arrays((fan_out,)))
    if with_bias:
        check(backend, F.linear, x, w, b)
    else:
        check(backend, lambda x, w: F.linear(x, w), x, w)


@given(tst.arrays(tst.shapes(max_dims=3, max_side=4)), st.floats(0.1, 0.9))
def test_dropout_gradient_for_a_fixed_mask(backend, x, p):
    def fn(t):
        tinyres.manual_seed(7)  # the same mask on every call
        return F.dropout(t, p, training=True)

    check(backend, fn, x)


@given(tst.arrays(tst.shapes(max_dims=3), -5, 5).flatmap(lambda x: st.tuples(st.just(x), st.integers(-x.ndim, x.ndim - 1))))
def test_log_softmax_gradient(backend, case):
    x, axis = case
    check(backend, lambda t: F.log_softmax(t, axis=axis), x)


@given(st.integers(1, 5), st.integers(2, 6), st.data())
def test_cross_entropy_gradient(backend, n, classes, data):
    logits = data.draw(tst.arrays((n, classes), -5, 5))
    labels = backend.asarray(np.array(data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))))
    check(backend, lambda z: F.cross_entropy(z, labels), logits)


@given(tst.arrays(tst.shapes()))
def test_astype_gradient_comes_back_in_the_input_dtype(backend, x):
    # (float32 rounding makes central differences meaningless here, so check the exact value)
    t = tensor(backend, x, requires_grad=True)
    (t.astype("float32") * 3.0).sum().backward()
    assert t.grad.dtype == np.float64
    np.testing.assert_array_equal(backend.to_numpy(t.grad), np.full(x.shape, 3.0))


R = np.random.default_rng(7)
X4 = R.uniform(-2, 2, (2, 3, 4, 4))
EVERY_OP = {  # name -> (op, arrays): every differentiable op of tinyres.nn.functional
    "add": (F.add, [R.uniform(-2, 2, (3, 1)), R.uniform(-2, 2, (1, 4))]),
    "sub": (F.sub, [R.uniform(-2, 2, (3, 4)), R.uniform(-2, 2, (4,))]),
    "mul": (F.mul, [R.uniform(-2, 2, (4,)), R.uniform(-2, 2, (3, 4))]),
    "div": (F.div, [R.uniform(-2, 2, (3, 4)), R.uniform(0.5, 2, (3, 1))]),
    "neg": (F.neg, [R.uniform(-2, 2, (3, 4))]),
    "power": (lambda t: F.power(t, 3), [R.uniform(-2, 2, (3, 4))]),
    "exp": (F.exp, [R.uniform(-2, 2, (3, 4))]),
    "log": (F.log, [R.uniform(0.5, 2, (3, 4))]),
    "matmul": (F.matmul, [R.uniform(-2, 2, (2, 3, 4)), R.uniform(-2, 2, (4, 5))]),
    "sum": (lambda t: F.sum(t, axis=1), [R.uniform(-2, 2, (3, 4))]),
    "mean": (lambda t: F.mean(t, axis=(0, 2)), [R.uniform(-2, 2, (3, 4, 2))]),
    "max": (lambda t: F.max(t, axis=0), [R.permutation(12).reshape(3, 4) / 4.0]),
    "reshape": (lambda t: F.reshape(t, (4, 3)), [R.uniform(-2, 2, (3, 4))]),
    "transpose": (lambda t: F.transpose(t, (1, 0, 2)), [R.uniform(-2, 2, (2, 3, 4))]),
    "flatten": (lambda t: F.flatten(t, 1), [X4]),
    "pad": (lambda t: F.pad(t, [(0, 0), (1, 2)], value=0.5), [R.uniform(-2, 2, (3, 4))]),
    "getitem": (lambda t: F.getitem(t, (slice(None, None, 2), None, slice(1, 3))), [R.uniform(-2, 2, (3, 4))]),
    "concat": (lambda a, b: F.concat([a, b], axis=1), [R.uniform(-2, 2, (3, 2)), R.uniform(-2, 2, (3, 4))]),
    "relu": (F.relu, [R.permutation(12).reshape(3, 4) / 4.0 - 1.375]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, 2, 1), [X4, R.uniform(-1, 1, (5, 3, 3, 3)), R.uniform(-1, 1, (5,))]),
    "batch_norm": (lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
                   [X4, R.uniform(0.5, 2, (3,)), R.uniform(-1, 1, (3,))]),
    "max_pool2d": (lambda t: F.max_pool2d(t, 2), [R.permutation(96).reshape(2, 3, 4, 4) / 8.0]),
    "avg_pool2d": (lambda t: F.avg_pool2d(t, 3, 1, 1), [X4]),
    "global_avg_pool2d": (F.global_avg_pool2d, [X4]),
    "linear": (F.linear, [R.uniform(-2, 2, (3, 4)), R.uniform(-1, 1, (5, 4)), R.uniform(-1, 1, (5,))]),
    "log_softmax": (lambda t: F.log_softmax(t, axis=1), [R.uniform(-2, 2, (3, 4))]),
    "cross_entropy": (F.cross_entropy, [R.uniform(-2, 2, (3, 4)), np.array([0, 3, 1])]),
}


@pytest.mark.parametrize("name", list(EVERY_OP))
def test_every_op_keeps_float32_and_computes_the_same_on_the_strict_backend(name):
    # gradcheck runs in float64 only; check_op adds what it cannot see: float32 in gives float32
    # out and float32 gradients of the inputs' shapes, and code that would break on CuPy
    op, arrays = EVERY_OP[name]
    assert check_op(op, arrays)


def test_the_list_of_every_op_is_complete():
    # a new op in tinyres.nn.functional joins EVERY_OP (dropout draws random masks, astype changes
    # the dtype on purpose, im2col and col2im are conv's helpers, tested with it)
    public = {name for name in dir(F) if not name.startswith("_") and callable(getattr(F, name))}
    assert public - {"dropout", "astype", "im2col", "col2im"} == set(EVERY_OP)
