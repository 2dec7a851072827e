"""The autograd engine: graph order, accumulation, broadcasting, depth, memory, grad modes."""

import gc
import weakref

import numpy as np
import pytest

import tinyres
import tinyres.nn.functional as F
from tests.helpers import host, tensor


def test_a_tensor_used_twice_gets_both_gradients_added(backend):
    x = tensor(backend, [1.0, 2.0, 3.0], requires_grad=True)
    y = x * x + x  # x appears three times
    y.sum().backward()
    np.testing.assert_allclose(host(x.grad), 2 * np.array([1.0, 2.0, 3.0]) + 1)


def test_an_intermediate_used_twice_gets_both_gradients_added(backend):
    x = tensor(backend, [0.5, -1.0], requires_grad=True)
    h = x.exp()
    (h * h + h).sum().backward()
    e = np.exp([0.5, -1.0])
    np.testing.assert_allclose(host(x.grad), 2 * e * e + e)


def test_broadcast_operand_gradient_is_summed_to_its_shape(backend):
    a = tensor(backend, np.ones((4, 3)), requires_grad=True)
    b = tensor(backend, [[1.0, 2.0, 3.0]], requires_grad=True)  # (1, 3)
    (a * b).sum().backward()
    assert host(b.grad).shape == (1, 3)
    np.testing.assert_allclose(host(b.grad), [[4.0, 4.0, 4.0]])


def test_gradients_accumulate_across_backward_calls_until_zeroed(backend):
    x = tensor(backend, [2.0], requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(host(x.grad), [6.0])
    x.zero_grad()
    assert x.grad is None


def test_very_deep_graph_backpropagates_without_recursion(backend):
    x = tensor(backend, [1.0], requires_grad=True)
    y = x
    for _ in range(20_000):  # far beyond Python's recursion limit of ~1000
        y = y * 1.0 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(host(x.grad), [1.0])


def test_no_grad_records_nothing(backend):
    x = tensor(backend, [1.0], requires_grad=True)
    with tinyres.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.grad_fn is None
    assert (x * 2.0).requires_grad


def test_detach_cuts_the_graph(backend):
    x = tensor(backend, [3.0], requires_grad=True)
    y = (x * x).detach() * x
    y.sum().backward()
    np.testing.assert_allclose(host(x.grad), [9.0])  # only the outer factor is differentiated


def test_backward_twice_needs_retain_graph(backend):
    x = tensor(backend, [1.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(host(x.grad), [4.0])
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_backward_of_a_non_scalar_needs_a_gradient(backend):
    x = tensor(backend, [1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be omitted only for a one-element tensor"):
        (x * 2.0).backward()
    (x * 2.0).backward(backend.asarray(np.array([1.0, 10.0])))
    np.testing.assert_allclose(host(x.grad), [2.0, 20.0])


def test_backward_without_any_gradient_path_is_an_error(backend):
    with pytest.raises(RuntimeError, match="does not require grad"):
        tensor(backend, [1.0]).sum().backward()


def test_intermediate_results_are_freed_after_the_forward_pass():
    # nodes hold their inputs' nodes, not their tensors: an intermediate nobody saved is freed
    x = tinyres.Tensor(np.ones((4, 4)), requires_grad=True)
    hidden = x + 1.0  # add saves nothing
    probe = weakref.ref(hidden.data) if hasattr(hidden.data, "__weakref__") else None
    out = (hidden + 2.0).sum()
    watched = weakref.ref(hidden)
    del hidden
    gc.collect()
    assert watched() is None
    out.backward()
    np.testing.assert_allclose(x.grad, np.ones((4, 4)))
    del probe


def test_saved_arrays_are_freed_by_backward():
    x = tinyres.Tensor(np.ones((3,)), requires_grad=True)
    y = x.exp()
    loss = (y * y).sum()
    node = loss.grad_fn
    loss.backward()
    assert node.backward is None  # the closure, and the arrays it saved, are gone


def test_a_backward_that_returns_a_wrong_shape_is_caught():
    x = tinyres.Tensor(np.ones((2, 3)), requires_grad=True)

    def broken(t):
        return tinyres.Tensor.from_op("broken", t.data * 2, lambda g: (g.sum(axis=0),), t)

    with pytest.raises(RuntimeError, match=r"broken backward returned a gradient of shape \(3,\).*\(2, 3\)"):
        broken(x).sum().backward()


def test_float32_stays_float32_through_forward_and_backward(backend):
    x = tinyres.Tensor(np.random.default_rng(0).standard_normal((2, 3, 6, 6)), requires_grad=True, backend=backend)
    w = tinyres.Tensor(np.random.default_rng(1).standard_normal((4, 3, 3, 3)), requires_grad=True, backend=backend)
    gamma = tinyres.Tensor(np.ones(4), requires_grad=True, backend=backend)
    beta = tinyres.Tensor(np.zeros(4), requires_grad=True, backend=backend)
    h = F.relu(F.batch_norm(F.conv2d(x, w, padding=1), None, None, gamma, beta, True))
    logits = F.linear(F.global_avg_pool2d(h), tinyres.Tensor(np.ones((5, 4)), requires_grad=True, backend=backend))
    loss = F.cross_entropy(logits, backend.asarray(np.array([0, 4])))
    assert loss.dtype == np.float32
    loss.backward()
    for t in (x, w, gamma, beta):
        assert t.grad.dtype == np.float32


def test_a_leaf_has_one_node_however_often_it_is_used():
    x = tinyres.Tensor(np.ones(3), requires_grad=True)
    y = (x * x + x).sum()
    leaves = [n for n in tinyres.autograd.topological_order(y.grad_fn) if isinstance(n, tinyres.autograd.GradAccumulator)]
    assert len(leaves) == 1 and leaves[0].tensor is x


def test_reductions_do_not_keep_their_input_alive():
    x = tinyres.Tensor(np.ones((4, 4)), requires_grad=True)
    hidden = x * 2.0
    loss = hidden.sum() + hidden.mean()
    watched = weakref.ref(hidden)
    del hidden
    gc.collect()
    assert watched() is None
    loss.backward()
    np.testing.assert_allclose(x.grad, np.full((4, 4), 2.0 + 2.0 / 16))


def test_numpy_scalars_as_exponents_axes_and_hyperparameters_keep_float32():
    from tinyres.optim import SGD

    x = tinyres.Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    y = x ** np.float64(2)
    assert y.dtype == np.float32
    y.sum(axis=np.int64(0)).backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])
    optimizer = SGD([x], lr=np.float64(0.1), momentum=np.float64(0.9), weight_decay=np.float64(1e-4))
    optimizer.step()
    optimizer.step()
    assert x.dtype == optimizer.velocity[0].dtype == np.float32


def test_power_zero_has_a_zero_gradient_everywhere(backend):
    x = tensor(backend, [0.0, 1.0, -2.0], requires_grad=True)
    (x**0).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [0.0, 0.0, 0.0])


def test_max_pool_propagates_nan_like_pytorch():
    x = tinyres.Tensor(np.array([[[[1.0, np.nan], [3.0, 2.0]]]]), dtype="float64")
    assert np.isnan(F.max_pool2d(x, 2).numpy()).all()


def test_max_and_max_pool_send_a_nans_gradient_to_the_nan_alone(backend):
    row = [[[[1.0, np.nan], [3.0, 2.0]]]]  # one 2x2 window, one NaN: both ops route to it
    for op in (lambda t: t.max(), lambda t: F.max_pool2d(t, 2)):
        x = tensor(backend, row, requires_grad=True)
        with np.errstate(invalid="ignore"):
            op(x).sum().backward()
        np.testing.assert_array_equal(host(x.grad), [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_ties_max_pool_sends_the_gradient_to_the_first_maximum_and_max_shares_it(backend):
    # the two documented rules (pooling.py: the first maximal element, as PyTorch; reduce.py: shared
    # equally), on windows where the maximum is reached twice; gradient checks never see ties
    x = tensor(backend, [[[[1.0, 3.0, 5.0, 0.0], [3.0, 2.0, 5.0, 5.0]]]], requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [[[[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])
    x = tensor(backend, [[1.0, 3.0], [3.0, 2.0]], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(host(x.grad), [[0.0, 0.5], [0.5, 0.0]])
    x = tensor(backend, [[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [[0.0, 0.5, 0.5], [0.5, 0.5, 0.0]])


def test_a_leaf_converted_by_module_astype_after_a_backward_takes_the_next_backward():
    layer = tinyres.nn.Linear(2, 2)
    layer(tinyres.Tensor(np.ones((1, 2)))).sum().backward()
    layer.astype("float64")
    layer(tinyres.Tensor(np.ones((1, 2)), dtype="float64")).sum().backward()
    assert layer.weight.grad.dtype == np.float64
    np.testing.assert_array_equal(layer.weight.grad, np.ones((2, 2)))
