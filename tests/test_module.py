"""Layers and Module: parameters, modes, state dicts, initialisation, and gradient checks of
every layer (float64)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyres
from tinyres import nn
from tinyres.testing import strategies as tst
from tests.helpers import tensor


def small_net():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.AvgPool2d(2, 1),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 3),
    )


def test_named_parameters_follow_attribute_paths():
    names = [name for name, _ in small_net().named_parameters()]
    assert names == ["0.weight", "1.weight", "1.bias", "4.weight", "4.bias", "8.weight", "8.bias"]
    assert [name for name, _ in small_net().named_buffers()] == ["1.running_mean", "1.running_var"]


def test_parameter_count():
    assert small_net().num_parameters() == 3 * 4 * 9 + 4 + 4 + 4 * 4 * 9 + 4 + 4 * 3 + 3


def test_train_and_eval_reach_every_submodule():
    net = small_net().eval()
    assert not any(m.training for m in net.modules())
    assert all(m.training for m in net.train().modules())


def test_zero_grad_clears_every_parameter():
    net = small_net()
    x = tinyres.Tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)))
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip_restores_outputs_including_running_statistics():
    tinyres.manual_seed(0)
    net = small_net()
    x = tinyres.Tensor(np.random.default_rng(1).standard_normal((4, 3, 8, 8)))
    net(x)  # updates batch norm's running statistics
    state = net.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert not np.allclose(state["1.running_mean"], 0)
    tinyres.manual_seed(1)
    other = small_net()
    assert other.load_state_dict(state) == ([], [])  # (missing_keys, unexpected_keys), as in PyTorch
    np.testing.assert_array_equal(other.eval()(x).numpy(), net.eval()(x).numpy())


def test_state_dict_is_a_snapshot():
    net = small_net()
    state = net.state_dict()
    net[0].weight.data *= 0
    assert np.any(state["0.weight"] != 0)


def test_load_state_dict_names_missing_unexpected_and_misshaped_entries():
    state = small_net().state_dict()
    with pytest.raises(ValueError, match=r"missing \['1.running_var'\]; unexpected \['extra'\]"):
        small_net().load_state_dict({**{k: v for k, v in state.items() if k != "1.running_var"}, "extra": np.ones(1)})
    state["8.bias"] = np.ones(5)
    with pytest.raises(ValueError, match=r"8.bias has shape \(5,\), the module expects \(3,\)"):
        small_net().load_state_dict(state)


def test_a_run_checkpoints_arrays_are_refused_with_how_to_load_them():
    # checkpoint.npz holds model.<name> and optimizer.<name>; loading it as a state dict must say so
    # (with strict=False it would otherwise load nothing and report success)
    arrays = {f"model.{k}": v for k, v in small_net().state_dict().items()}
    arrays["optimizer.velocity.0"] = np.zeros(3)
    for strict in (True, False):
        with pytest.raises(ValueError, match=r"a training run's checkpoint arrays.*tinyres.evaluate.load_run"):
            small_net().load_state_dict(arrays, strict=strict)


def test_he_initialisation_has_the_papers_standard_deviation():
    tinyres.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3)
    fan_in = 64 * 9
    assert abs(conv.weight.numpy().std() / np.sqrt(2 / fan_in) - 1) < 0.02
    assert abs(conv.weight.numpy().mean()) < 0.01 * np.sqrt(2 / fan_in) * 10
    np.testing.assert_array_equal(conv.bias.numpy(), 0)


def test_manual_seed_makes_initialisation_reproducible():
    tinyres.manual_seed(3)
    a = small_net().state_dict()
    tinyres.manual_seed(3)
    b = small_net().state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_batchnorm_eval_uses_running_statistics(backend):
    bn = nn.BatchNorm2d(2).to(backend)
    bn.running_mean[...] = backend.asarray(np.array([1.0, -1.0], dtype=np.float32))
    bn.running_var[...] = backend.asarray(np.array([4.0, 0.25], dtype=np.float32))
    x = np.random.default_rng(0).standard_normal((3, 2, 2, 2)).astype(np.float32)
    y = bn.eval()(tinyres.Tensor(x, backend=backend)).numpy()
    expected = (x - np.array([1, -1]).reshape(1, 2, 1, 1)) / np.sqrt(np.array([4, 0.25]).reshape(1, 2, 1, 1) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def check_layer(backend, layer, x):
    """gradcheck a layer w.r.t. its input and every parameter, in float64."""
    layer.astype("float64").to(backend)
    params = layer.parameters()

    def fn(x, *ps):
        return layer(x)

    assert tinyres.gradcheck(fn, [tensor(backend, x, requires_grad=True)] + params)


@given(tst.conv_geometries(max_channels=2, max_size=5), st.booleans(), st.data())
def test_conv2d_layer_gradients(backend, g, bias, data):
    layer = nn.Conv2d(g.in_channels, g.out_channels, g.kernel_size, g.stride, g.padding, bias=bias)
    check_layer(backend, layer, data.draw(tst.arrays((g.batch, g.in_channels, g.height, g.width))))


@given(st.integers(2, 3), st.integers(1, 3), st.data())
def test_batchnorm2d_layer_gradients_train_and_eval(backend, n, c, data):
    layer = nn.BatchNorm2d(c, momentum=0.0)
    layer.weight.data[...] = data.draw(tst.arrays((c,), 0.5, 2.0)).astype(np.float32)
    x = data.draw(tst.arrays((n, c, 2, 3)))
    check_layer(backend, layer, x)
    # evaluation with statistics far from the initial (0, 1), so a backward that used the wrong
    # ones (or the batch's) would show
    layer.running_mean[...] = backend.asarray(data.draw(tst.arrays((c,), -2.0, 2.0)))
    layer.running_var[...] = backend.asarray(data.draw(tst.arrays((c,), 0.25, 4.0)))
    check_layer(backend, layer.eval(), x)


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.booleans(), st.data())
def test_linear_layer_gradients(backend, n, fan_in, fan_out, bias, data):
    check_layer(backend, nn.Linear(fan_in, fan_out, bias), data.draw(tst.arrays((n, fan_in))))


@given(tst.pool_geometries(), st.data())
def test_pooling_relu_flatten_layer_gradients(backend, g, data):
    x = data.draw(tst.arrays((g.batch, g.channels, g.height, g.width), -4, 4, spaced=True))
    check_layer(backend, nn.MaxPool2d(g.kernel_size, g.stride, g.padding), x)
    check_layer(backend, nn.AvgPool2d(g.kernel_size, g.stride, g.padding), x)
    check_layer(backend, nn.Sequential(nn.ReLU(), nn.GlobalAvgPool2d()), x)
    check_layer(backend, nn.Flatten(), x)


@given(tst.arrays(tst.shapes(max_dims=4, max_side=4)), st.floats(0.05, 0.9))
def test_dropout_layer_gradient_and_eval_identity(backend, x, p):
    layer = nn.Dropout(p)

    def fixed_mask(x):
        tinyres.manual_seed(1)
        return layer(x)

    assert tinyres.gradcheck(fixed_mask, [tensor(backend, x, requires_grad=True)])
    np.testing.assert_array_equal(layer.eval()(tensor(backend, x)).numpy(), x)


def test_dropout_keeps_the_expected_value(backend):
    tinyres.manual_seed(0)
    y = nn.Dropout(0.25)(tinyres.Tensor(np.ones(200_000), backend=backend)).numpy()
    assert abs(np.mean(y == 0) - 0.25) < 0.01
    assert abs(y.mean() - 1) < 0.01


@settings(max_examples=10)  # each example checks ~200 numbers through six layers
@given(st.integers(1, 3), st.integers(4, 5), st.data())
def test_sequential_net_gradients_end_to_end(backend, n, size, data):
    tinyres.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 2, stride=2),
                        nn.GlobalAvgPool2d(), nn.Linear(2, 3))
    # distinct input values: a constant input puts every ReLU exactly on its kink
    check_layer(backend, net, data.draw(tst.arrays((max(n, 2), 2, size, size), -30, 30, spaced=True)))


def test_a_module_used_twice_is_counted_and_trained_once():
    from tinyres.optim import SGD

    tinyres.manual_seed(0)
    layer = nn.Linear(2, 2)
    net = nn.Sequential(layer, layer)
    assert net.num_parameters() == 6 and len(net.parameters()) == 2
    before = layer.weight.numpy()
    net(tinyres.Tensor(np.ones((1, 2)))).sum().backward()
    gradient = layer.weight.grad.copy()  # both uses have added into it
    SGD(net.parameters(), lr=0.1).step()
    np.testing.assert_allclose(layer.weight.numpy(), before - 0.1 * gradient, rtol=1e-6)


def test_astype_and_to_keep_the_parameter_objects_an_optimizer_holds():
    from tinyres.optim import SGD

    net = small_net()
    optimizer = SGD(net.parameters(), lr=0.1)
    net.astype("float64").to("strict")
    assert all(p.dtype == np.float64 and p.backend.name == "strict" for p in optimizer.parameters)
    assert [id(p) for p in net.parameters()] == [id(p) for p in optimizer.parameters]


def sgd_steps(net, moves):
    """Two momentum SGD steps on ``net``, with ``moves(net)`` applied between them; the final
    parameters on the host as float64."""
    from tinyres.optim import SGD

    optimizer = SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for step in range(2):
        p = net.parameters()[0]
        x = tinyres.Tensor(np.linspace(-1, 1, 6).reshape(2, 3), dtype=p.dtype, backend=p.backend)
        net.zero_grad()
        (net(x) * net(x)).sum().backward()
        optimizer.step()
        if step == 0:
            moves(net)
    return [p.numpy().astype(np.float64) for p in net.parameters()], optimizer


def test_momentum_follows_the_parameters_to_another_backend():
    tinyres.manual_seed(0)
    stayed, _ = sgd_steps(nn.Linear(3, 2), lambda net: None)
    tinyres.manual_seed(0)
    moved, optimizer = sgd_steps(nn.Linear(3, 2), lambda net: net.to("strict"))
    for a, b in zip(stayed, moved):
        np.testing.assert_array_equal(a, b)  # the strict backend computes exactly what NumPy does
    assert all(tinyres.get_backend("strict").owns(v) for v in optimizer.velocity)
    assert all(v.shape == p.shape for v, p in zip(optimizer.state_dict().values(), optimizer.parameters))


def test_momentum_follows_the_parameters_to_another_dtype():
    tinyres.manual_seed(0)
    _, optimizer = sgd_steps(nn.Linear(3, 2), lambda net: net.astype("float64"))
    assert all(v.dtype == np.float64 for v in optimizer.velocity)


def test_observing_reports_each_call_changes_nothing_and_restores_forward_even_after_an_error():
    from tinyres.nn.module import observing

    net = small_net().eval()
    x = tensor("numpy", np.random.default_rng(0).normal(size=(2, 3, 8, 8)), dtype="float32")
    with tinyres.no_grad():
        expected = net(x).data.copy()
        seen = []
        with observing([net[1], net[4], net[4]], lambda module, out: seen.append((module, out.shape))):
            np.testing.assert_array_equal(net(x).data, expected)
        assert seen == [(net[1], (2, 4, 8, 8)), (net[4], (2, 4, 2, 2)), (net[4], (2, 4, 2, 2))]  # listed twice: twice
        assert not any("forward" in vars(m) for m in net.modules())

        def failing(module, out):
            raise RuntimeError("stop")

        with pytest.raises(RuntimeError, match="stop"), observing([net[1]], failing):
            net(x)
        assert "forward" not in vars(net[1])
