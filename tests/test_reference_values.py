"""Forward values of the layers against references written here as plain loops and textbook
formulas, in float64: an oracle independent of tinyres's vectorised code that needs no PyTorch
(the PyTorch comparisons in test_torch_oracle.py skip where torch cannot be installed; these
always run). Gradient checks cannot replace them: they only show that backward agrees with
forward, whatever forward computes."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyres.nn.functional as F
from tinyres.testing import strategies as tst
from tests.helpers import host, tensor


def pool_reference(x, kernel, stride, padding, reduce, fill):
    """Pool each window of x (N, C, H, W), padded with ``fill``, by ``reduce``, one window at a time."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    padded = np.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)], constant_values=fill)
    out_h, out_w = (padded.shape[2] - kh) // sh + 1, (padded.shape[3] - kw) // sw + 1
    out = np.empty(x.shape[:2] + (out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            out[:, :, i, j] = reduce(padded[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw], axis=(2, 3))
    return out


@given(tst.conv_geometries(), st.data())
def test_max_and_average_pooling_are_the_window_maximum_and_mean(backend, g, data):
    kernel, stride = g.kernel_size, g.stride
    padding = tuple(min(p, k // 2) for p, k in zip(g.padding, kernel))  # pooling pads at most half a window
    x = data.draw(tst.arrays((g.batch, g.in_channels, g.height, g.width)))
    ours = F.max_pool2d(tensor(backend, x), kernel, stride, padding)
    np.testing.assert_array_equal(host(ours.data), pool_reference(x, kernel, stride, padding, np.max, -np.inf))
    ours = F.avg_pool2d(tensor(backend, x), kernel, stride, padding)  # zero padding counts, as in PyTorch
    np.testing.assert_allclose(host(ours.data), pool_reference(x, kernel, stride, padding, np.mean, 0.0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(F.global_avg_pool2d(tensor(backend, x)).data), x.mean(axis=(2, 3)), rtol=1e-12, atol=1e-12)


@given(st.integers(2, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.data())
def test_batch_norm_in_training_normalises_by_the_batch_and_updates_the_running_statistics(backend, n, c, h, w, data):
    x = data.draw(tst.arrays((n, c, h, w)))
    gamma, beta = data.draw(tst.arrays((c,), 0.5, 2.0)), data.draw(tst.arrays((c,)))
    old_mean, old_var = data.draw(tst.arrays((c,))), data.draw(tst.arrays((c,), 0.5, 2.0))
    running_mean, running_var = backend.asarray(old_mean.copy()), backend.asarray(old_var.copy())
    y = F.batch_norm(tensor(backend, x), running_mean, running_var, tensor(backend, gamma), tensor(backend, beta),
                     training=True, momentum=0.25, eps=1e-5)
    for k in range(c):  # one channel at a time, over its n*h*w values
        values = x[:, k].ravel()
        mean, var = values.sum() / values.size, ((values - values.mean()) ** 2).sum() / values.size
        expected = gamma[k] * (x[:, k] - mean) / np.sqrt(var + 1e-5) + beta[k]
        np.testing.assert_allclose(host(y.data)[:, k], expected, rtol=1e-10, atol=1e-10)
        unbiased = var * values.size / (values.size - 1)
        assert host(running_mean)[k] == pytest.approx(0.75 * old_mean[k] + 0.25 * mean, rel=1e-12, abs=1e-12)
        assert host(running_var)[k] == pytest.approx(0.75 * old_var[k] + 0.25 * unbiased, rel=1e-12, abs=1e-12)


@given(st.integers(1, 5), st.integers(2, 8), st.data())
def test_log_softmax_and_cross_entropy_are_the_textbook_formulas(backend, n, classes, data):
    logits = data.draw(tst.arrays((n, classes), -30, 30))
    labels = np.array(data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    log_probabilities = np.array([[z - np.log(sum(np.exp(v) for v in row)) for z in row] for row in logits])
    ours = F.log_softmax(tensor(backend, logits), axis=1)
    np.testing.assert_allclose(host(ours.data), log_probabilities, rtol=1e-10, atol=1e-10)
    loss = F.cross_entropy(tensor(backend, logits), backend.asarray(labels))
    assert loss.item() == pytest.approx(-np.mean(log_probabilities[np.arange(n), labels]), rel=1e-10)


def test_cross_entropy_is_stable_for_huge_logits(backend):
    logits = tensor(backend, [[1000.0, 0.0, -1000.0]], requires_grad=True)
    loss = F.cross_entropy(logits, backend.asarray(np.array([2])))
    assert loss.item() == pytest.approx(2000.0)
    loss.backward()
    assert np.all(np.isfinite(host(logits.grad)))


def test_linear_is_x_times_w_transposed_plus_b(backend):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)
    expected = [[sum(x[i, k] * w[j, k] for k in range(3)) + b[j] for j in range(5)] for i in range(4)]
    np.testing.assert_allclose(host(F.linear(tensor(backend, x), tensor(backend, w), tensor(backend, b)).data),
                               expected, rtol=1e-12, atol=1e-12)
