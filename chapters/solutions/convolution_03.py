"""Worked solution to chapter 3, exercise 5: col2im written anew (the adjoint of the library's
im2col), and a convolution op whose backward uses it, for any stride and padding."""

from tinyres.backend import backend_of
from tinyres.nn.functional.common import pair
from tinyres.nn.functional.conv import im2col, output_size
from tinyres.tensor import Tensor


def my_col2im(cols, x_shape, kernel_size, stride, padding):
    """Add every entry of cols[(c, i, j), (n, h, w)] onto x_pad[n, c, h*sh + i, w*sw + j]."""
    xp = backend_of(cols).xp
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size, "kernel_size", "my_col2im"), pair(stride, "stride", "my_col2im"), pair(padding, "padding", "my_col2im")
    n, c, height, width = x_shape
    out_h, out_w = output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)
    blocks = cols.reshape(c, kh, kw, n, out_h, out_w)
    padded = xp.zeros((n, c, height + 2 * ph, width + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):  # all the pixels that kernel offset (i, j) met, as one strided slice
            padded[:, :, i : i + sh * out_h : sh, j : j + sw * out_w : sw] += blocks[:, i, j].transpose(1, 0, 2, 3)
    return padded[:, :, ph : ph + height, pw : pw + width]


def conv2d_by_col2im(x, w, stride, padding):
    """Y = W im2col(x); backward: dW = G cols^T, dX = my_col2im(W^T G)."""
    n, c, height, width = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = pair(stride, "stride", "conv2d_by_col2im"), pair(padding, "padding", "conv2d_by_col2im")
    out_h, out_w = output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)
    cols = im2col(x.data, (kh, kw), (sh, sw), (ph, pw))  # (C*kh*kw, N*Ho*Wo)
    w_matrix = w.data.reshape(o, -1)  # (O, C*kh*kw)
    y = (w_matrix @ cols).reshape(o, n, out_h, out_w).transpose(1, 0, 2, 3)

    def backward(g):
        g_matrix = g.transpose(1, 0, 2, 3).reshape(o, -1)  # (O, N*Ho*Wo), columns (n, h, w) like cols
        dx = my_col2im(w_matrix.T @ g_matrix, x.shape, (kh, kw), (sh, sw), (ph, pw))
        dw = (g_matrix @ cols.T).reshape(w.shape)
        return dx, dw

    return Tensor.from_op("conv2d_by_col2im", y, backward, x, w)
