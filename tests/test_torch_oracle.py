"""Forward values and gradients against PyTorch, an independent implementation.

Skipped cleanly where torch is not installed (`pip install torch==2.13.0` installs a CPU build
on the project's machines). Runs in float64 so any disagreement is a bug, not rounding.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyres
import tinyres.nn.functional as F
from tinyres.testing import strategies as tst
from tests.helpers import host, tensor

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def both(backend, *arrays):
    """The same float64 data as tinyres tensors and as torch tensors, all requiring grad."""
    ours = [tensor(backend, a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    return ours, theirs


def assert_same(ours_out, theirs_out, ours_in, theirs_in, seed=0):
    """Same outputs, and the same input gradients for a random output gradient."""
    np.testing.assert_allclose(host(ours_out), theirs_out.detach().numpy(), rtol=1e-10, atol=1e-10)
    grad = np.random.default_rng(seed).standard_normal(theirs_out.shape)
    ours_out.backward(ours_out.backend.asarray(grad))
    theirs_out.backward(torch.tensor(grad))
    for k, (a, b) in enumerate(zip(ours_in, theirs_in)):
        np.testing.assert_allclose(host(a.grad), b.grad.numpy(), rtol=1e-9, atol=1e-9, err_msg=f"input {k}")


@given(tst.conv_geometries(max_batch=3, max_channels=4, max_size=9, max_kernel=5), st.booleans(), st.data())
def test_conv2d_matches_torch(backend, g, bias, data):
    x = data.draw(tst.arrays((g.batch, g.in_channels, g.height, g.width)))
    w = data.draw(tst.arrays((g.out_channels, g.in_channels) + g.kernel_size))
    b = data.draw(tst.arrays((g.out_channels,)))
    arrays = (x, w, b) if bias else (x, w)
    ours, theirs = both(backend, *arrays)
    out = F.conv2d(*ours, stride=g.stride, padding=g.padding) if bias else F.conv2d(*ours, None, g.stride, g.padding)
    ref = TF.conv2d(*theirs, stride=g.stride, padding=g.padding)
    assert_same(out, ref, ours, theirs)


@given(st.integers(2, 4), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.floats(0.0, 1.0), st.data())
def test_batch_norm_training_matches_torch_including_running_statistics(backend, n, c, h, w, momentum, data):
    x = data.draw(tst.arrays((n, c, h, w), -3, 3))
    gamma, beta = data.draw(tst.arrays((c,), 0.5, 2)), data.draw(tst.arrays((c,)))
    mean0, var0 = data.draw(tst.arrays((c,))), data.draw(tst.arrays((c,), 0.5, 2))
    ours, theirs = both(backend, x, gamma, beta)
    our_mean, our_var = backend.asarray(mean0.copy()), backend.asarray(var0.copy())
    ref_mean, ref_var = torch.tensor(mean0), torch.tensor(var0)
    out = F.batch_norm(ours[0], our_mean, our_var, ours[1], ours[2], True, momentum, 1e-5)
    ref = TF.batch_norm(theirs[0], ref_mean, ref_var, theirs[1], theirs[2], True, momentum, 1e-5)
    np.testing.assert_allclose(host(our_mean), ref_mean.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(our_var), ref_var.numpy(), rtol=1e-10, atol=1e-12)
    assert_same(out, ref, ours, theirs)


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.data())
def test_batch_norm_evaluation_matches_torch(backend, n, c, h, data):
    x = data.draw(tst.arrays((n, c, h, h), -3, 3))
    gamma, beta = data.draw(tst.arrays((c,), 0.5, 2)), data.draw(tst.arrays((c,)))
    mean, var = data.draw(tst.arrays((c,))), data.draw(tst.arrays((c,), 0.5, 2))
    ours, theirs = both(backend, x, gamma, beta)
    out = F.batch_norm(ours[0], backend.asarray(mean), backend.asarray(var), ours[1], ours[2], False)
    ref = TF.batch_norm(theirs[0], torch.tensor(mean), torch.tensor(var), theirs[1], theirs[2], False)
    assert_same(out, ref, ours, theirs)


@given(tst.pool_geometries(max_size=8), st.data())
def test_max_pool2d_matches_torch(backend, g, data):
    x = data.draw(tst.arrays((g.batch, g.channels, g.height, g.width), -4, 4, spaced=True))
    ours, theirs = both(backend, x)
    out = F.max_pool2d(ours[0], g.kernel_size, g.stride, g.padding)
    assert_same(out, TF.max_pool2d(theirs[0], g.kernel_size, g.stride, g.padding), ours, theirs)


@given(tst.pool_geometries(max_size=8), st.data())
def test_avg_pool2d_matches_torch(backend, g, data):
    x = data.draw(tst.arrays((g.batch, g.channels, g.height, g.width)))
    ours, theirs = both(backend, x)
    out = F.avg_pool2d(ours[0], g.kernel_size, g.stride, g.padding)
    assert_same(out, TF.avg_pool2d(theirs[0], g.kernel_size, g.stride, g.padding), ours, theirs)


def test_global_avg_pool2d_matches_torch(backend):
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 6))
    ours, theirs = both(backend, x)
    assert_same(F.global_avg_pool2d(ours[0]), TF.adaptive_avg_pool2d(theirs[0], 1).flatten(1), ours, theirs)


@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6), st.data())
def test_linear_matches_torch(backend, n, fan_in, fan_out, data):
    arrays = (data.draw(tst.arrays((n, fan_in))), data.draw(tst.arrays((fan_out, fan_in))), data.draw(tst.arrays((fan_out,))))
    ours, theirs = both(backend, *arrays)
    assert_same(F.linear(*ours), TF.linear(*theirs), ours, theirs)


@given(st.integers(1, 6), st.integers(2, 10), st.data())
def test_cross_entropy_and_log_softmax_match_torch(backend, n, classes, data):
    logits = data.draw(tst.arrays((n, classes), -30, 30))
    labels = np.array(data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    ours, theirs = both(backend, logits)
    out = F.cross_entropy(ours[0], backend.asarray(labels))
    assert_same(out, TF.cross_entropy(theirs[0], torch.tensor(labels)), ours, theirs)
    ours, theirs = both(backend, logits)
    assert_same(F.log_softmax(ours[0], axis=1), TF.log_softmax(theirs[0], dim=1), ours, theirs)


def test_float32_conv_net_matches_torch_within_float32_rounding(backend):
    """The float32 path (what training uses) against torch in float32."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)
    w1 = (rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((32, 16, 3, 3)) * 0.1).astype(np.float32)
    ours = [tinyres.Tensor(a, requires_grad=True, backend=backend) for a in (x, w1, w2)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w1, w2)]
    g = tinyres.Tensor(np.ones(16, np.float32), backend=backend)
    b = tinyres.Tensor(np.zeros(16, np.float32), backend=backend)
    out = F.conv2d(F.relu(F.batch_norm(F.conv2d(ours[0], ours[1], padding=1), None, None, g, b, True)), ours[2], stride=2, padding=1)
    ref = TF.conv2d(TF.relu(TF.batch_norm(TF.conv2d(theirs[0], theirs[1], padding=1), None, None, training=True)), theirs[2], stride=2, padding=1)
    np.testing.assert_allclose(host(out), ref.detach().numpy(), rtol=1e-4, atol=1e-4)
    out.sum().backward()
    ref.sum().backward()
    for a, b_ in zip(ours, theirs):
        np.testing.assert_allclose(host(a.grad), b_.grad.numpy(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("plain", [False, True], ids=["resnet", "plain"])
def test_cifar_network_and_sgd_match_the_torch_twin_over_three_steps(plain, monkeypatch):
    """Model wiring (option-A shortcuts, stage transitions, pooling, classifier), the loss, every
    parameter's gradient and the optimizer together: three SGD steps of a depth-8 CIFAR net from the
    same weights give the same losses, weights and batch-norm statistics as PyTorch, in float64."""
    from pathlib import Path

    from tinyres.models import cifar_resnet
    from tinyres.optim import SGD

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from torch_reference import CifarResNet, load_tinyres_weights, sorted_state

    tinyres.manual_seed(0)
    ours = cifar_resnet(8, plain=plain).astype("float64")
    theirs = CifarResNet(8, plain=plain).double()
    load_tinyres_weights(theirs, ours)
    ours_opt = SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    theirs_opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    for step in range(3):
        images = rng.standard_normal((6, 3, 32, 32))
        labels = rng.integers(0, 10, 6)
        loss = F.cross_entropy(ours(tinyres.Tensor(images, dtype="float64")), labels)
        ours_opt.zero_grad()
        loss.backward()
        ours_opt.step()
        ref = TF.cross_entropy(theirs(torch.tensor(images)), torch.tensor(labels))
        theirs_opt.zero_grad()
        ref.backward()
        theirs_opt.step()
        assert loss.item() == pytest.approx(ref.item(), rel=1e-10), f"loss at step {step}"
    expected = [t.numpy() for name, t in theirs.state_dict().items() if not name.endswith("num_batches_tracked")]
    for (name, value), ref_value in zip(sorted_state(ours), expected):
        np.testing.assert_allclose(value.reshape(ref_value.shape), ref_value, rtol=1e-8, atol=1e-10, err_msg=name)
