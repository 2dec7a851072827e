"""conv2d's building blocks: im2col against a direct loop, col2im as its exact adjoint, and the
convolution itself against the definition (an oracle that needs no PyTorch)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import tinyres
import tinyres.nn.functional as F
from tinyres.nn.functional.conv import output_size
from tinyres.testing import strategies as tst
from tests.helpers import host, tensor


def direct_conv(x, w, stride, padding):
    """y[n,o,h,w] = sum_{c,i,j} w[o,c,i,j] x_pad[n,c,h*sh+i,w*sw+j], written as loops."""
    (sh, sw), (ph, pw) = stride, padding
    n, c, height, width = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((n, o, output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)))
    for h in range(out.shape[2]):
        for v in range(out.shape[3]):
            patch = xp[:, :, h * sh : h * sh + kh, v * sw : v * sw + kw]  # (N, C, kh, kw)
            out[:, :, h, v] = np.einsum("ncij,ocij->no", patch, w)
    return out


@given(tst.conv_geometries(), st.data())
def test_im2col_columns_are_the_patches(backend, g, data):
    x = data.draw(tst.arrays((g.batch, g.in_channels, g.height, g.width)))
    cols = host(F.im2col(backend.asarray(x), g.kernel_size, g.stride, g.padding))
    (kh, kw), (sh, sw), (ph, pw) = g.kernel_size, g.stride, g.padding
    out_h, out_w = output_size(g.height, kh, sh, ph), output_size(g.width, kw, sw, pw)
    assert cols.shape == (g.in_channels * kh * kw, g.batch * out_h * out_w)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = cols.reshape(g.in_channels, kh, kw, g.batch, out_h, out_w)
    for n in range(g.batch):
        for h in range(out_h):
            for v in range(out_w):
                np.testing.assert_array_equal(cols[:, :, :, n, h, v], xp[n, :, h * sh : h * sh + kh, v * sw : v * sw + kw])


@given(st.sampled_from([(1, 1), (3, 3), (5, 5), (3, 1), (1, 5)]), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 7), st.integers(1, 7), st.booleans(), st.data())
def test_same_size_fast_path_unfolds_exactly_what_im2col_does(backend, kernel, batch, channels, height, width,
                                                              stored_channel_major, data):
    # conv2d's whole-channel shifted copies (_im2col_same_size) against the teaching im2col, on
    # inputs stored channel-major (activations) and batch-major (a network's input images)
    from tinyres.nn.functional.conv import _unfold_into_scratch

    padding = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    if stored_channel_major:
        x = data.draw(tst.arrays((channels, batch, height, width))).transpose(1, 0, 2, 3)
    else:
        x = data.draw(tst.arrays((batch, channels, height, width)))
    xb = backend.asarray(x)
    if stored_channel_major:  # keep the device copy channel-major as well
        xb = backend.asarray(np.ascontiguousarray(x.transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3)
    expected = host(F.im2col(xb, kernel, (1, 1), padding))
    np.testing.assert_array_equal(host(_unfold_into_scratch(xb, kernel, (1, 1), padding)), expected)


@given(tst.conv_geometries(), st.data())
def test_col2im_is_the_adjoint_of_im2col(backend, g, data):
    # <im2col(x), C> = <x, col2im(C)> for all x, C: exactly what backpropagation needs
    x = data.draw(tst.arrays((g.batch, g.in_channels, g.height, g.width)))
    cols_shape = host(F.im2col(backend.asarray(x), g.kernel_size, g.stride, g.padding)).shape
    c = np.random.default_rng(0).standard_normal(cols_shape)
    lhs = np.sum(host(F.im2col(backend.asarray(x), g.kernel_size, g.stride, g.padding)) * c)
    rhs = np.sum(x * host(F.col2im(backend.asarray(c), x.shape, g.kernel_size, g.stride, g.padding)))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


@given(tst.conv_geometries(max_size=8), st.data())
def test_conv2d_matches_the_definition(backend, g, data):
    x = data.draw(tst.arrays((g.batch, g.in_channels, g.height, g.width)))
    w = data.draw(tst.arrays((g.out_channels, g.in_channels) + g.kernel_size))
    out = F.conv2d(tensor(backend, x), tensor(backend, w), None, g.stride, g.padding)
    np.testing.assert_allclose(host(out), direct_conv(x, w, g.stride, g.padding), rtol=1e-10, atol=1e-10)


def test_both_input_gradient_routes_agree(backend):
    # stride 1 uses "dY convolved with the flipped kernel", other strides col2im: for a stride-1
    # problem both must give the same input gradient
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    g = rng.standard_normal((2, 4, 7, 7))
    xt = tensor(backend, x, requires_grad=True)
    F.conv2d(xt, tensor(backend, w), padding=1).backward(backend.asarray(g))
    w_matrix = w.reshape(4, -1)
    via_col2im = host(F.col2im(backend.asarray(w_matrix.T @ g.transpose(1, 0, 2, 3).reshape(4, -1)), x.shape, (3, 2), (1, 1), (1, 1)))
    np.testing.assert_allclose(host(xt.grad), via_col2im, rtol=1e-10, atol=1e-10)


def test_interleaved_convolutions_do_not_corrupt_each_other(backend):
    # conv2d reuses scratch buffers between calls: results must not depend on call order
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((3, 5, 4, 4))
    wa, wb = rng.standard_normal((2, 3, 3, 3)), rng.standard_normal((6, 5, 2, 2))
    first = host(F.conv2d(tensor(backend, a), tensor(backend, wa), padding=1))
    F.conv2d(tensor(backend, b), tensor(backend, wb), stride=2)
    np.testing.assert_array_equal(host(F.conv2d(tensor(backend, a), tensor(backend, wa), padding=1)), first)
    np.testing.assert_allclose(first, direct_conv(a, wa, (1, 1), (1, 1)), rtol=1e-10, atol=1e-10)


def test_convolutions_in_two_threads_do_not_share_scratch_buffers():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    cases = [(rng.standard_normal((2, c, s, s)), rng.standard_normal((4, c, 3, 3))) for c, s in [(3, 9), (5, 6)] * 6]

    def convolve(case):
        x, w = case
        return F.conv2d(tinyres.Tensor(x, dtype="float64"), tinyres.Tensor(w, dtype="float64"), padding=1).numpy()

    expected = [convolve(case) for case in cases]
    with ThreadPoolExecutor(2) as pool:  # user threads, each running whole convolutions
        for _ in range(5):
            for got, want in zip(pool.map(convolve, cases), expected):
                np.testing.assert_array_equal(got, want)
