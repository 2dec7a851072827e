"""Pooling: max and average over windows, and global average pooling.

Like im2col, the windowed pools loop over the kh*kw offsets of the window, each a strided
slice of the padded input, so they work unchanged on NumPy and CuPy. Feature maps are handled
channel-major, (C, N, H, W), like everything else (see common.py).
"""

from tinyres.nn.functional.common import channel_major, check_feature_map, check_inputs, pair
from tinyres.nn.functional.conv import output_size
from tinyres.tensor import Tensor


def _window_geometry(op, x, kernel_size, stride, padding):
    check_inputs(op, x)
    check_feature_map(op, x)
    kernel = pair(kernel_size, "kernel_size", op)
    stride = kernel if stride is None else pair(stride, "stride", op)
    padding = pair(padding, "padding", op)
    height, width = x.shape[2:]
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"{op}: need kernel >= 1, stride >= 1, padding >= 0, got {kernel}, {stride}, {padding}")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding} must be at most half the kernel {kernel}")
    if kernel[0] > height + 2 * padding[0] or kernel[1] > width + 2 * padding[1]:
        raise ValueError(f"{op}: window {kernel} is larger than the padded input {x.shape[2:]} + {padding}")
    out = (output_size(height, kernel[0], stride[0], padding[0]), output_size(width, kernel[1], stride[1], padding[1]))
    return kernel, stride, padding, out


def _windows(padded, kernel, stride, out):
    """Yield (offset index, strided view) for every offset of the pooling window."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, out
    for i in range(kh):
        for j in range(kw):
            yield i * kw + j, (Ellipsis, slice(i, i + sh * out_h, sh), slice(j, j + sw * out_w, sw))


def _padded(x, padding, value):
    xp, (ph, pw) = x.xp, padding
    c_major = channel_major(x.data)
    if not (ph or pw):
        return c_major
    c, n, height, width = c_major.shape
    padded = xp.full((c, n, height + 2 * ph, width + 2 * pw), value, dtype=x.dtype)
    padded[:, :, ph : ph + height, pw : pw + width] = c_major
    return padded


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Maximum over each window (padding counts as -infinity). stride defaults to the kernel.

    The gradient of each window goes to its (first) maximal element, as in PyTorch.
    """
    kernel, stride, padding, out_hw = _window_geometry("max_pool2d", x, kernel_size, stride, padding)
    xp = x.xp
    padded = _padded(x, padding, -xp.inf)
    c, n = padded.shape[:2]
    out = xp.full((c, n) + out_hw, -xp.inf, dtype=x.dtype)
    argmax = xp.zeros((c, n) + out_hw, dtype=xp.int32)  # which offset won
    for k, window in _windows(padded, kernel, stride, out_hw):
        values = padded[window]
        larger = (values > out) | (xp.isnan(values) & ~xp.isnan(out))  # a NaN wins, as in PyTorch
        out = xp.where(larger, values, out)
        argmax = xp.where(larger, k, argmax)
    padded_shape, x_shape = padded.shape, x.shape

    def backward(g):  # route each window's gradient to the element that won it
        g = channel_major(g)
        dpadded = xp.zeros(padded_shape, dtype=g.dtype)
        for k, window in _windows(dpadded, kernel, stride, out_hw):
            dpadded[window] += g * (argmax == k)
        ph, pw = padding
        dx = dpadded[:, :, ph : ph + x_shape[2], pw : pw + x_shape[3]]
        return (dx.transpose(1, 0, 2, 3),)

    return Tensor.from_op("max_pool2d", out.transpose(1, 0, 2, 3), backward, x)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each window, zero padding included in the count (PyTorch's default)."""
    kernel, stride, padding, out_hw = _window_geometry("avg_pool2d", x, kernel_size, stride, padding)
    xp = x.xp
    padded = _padded(x, padding, 0)
    c, n = padded.shape[:2]
    scale = x.dtype.type(1 / (kernel[0] * kernel[1]))
    out = xp.zeros((c, n) + out_hw, dtype=x.dtype)
    for _, window in _windows(padded, kernel, stride, out_hw):
        out += padded[window]
    out *= scale
    padded_shape, x_shape = padded.shape, x.shape

    def backward(g):  # each window element received 1/(kh*kw) of the window's gradient
        g = channel_major(g) * scale
        dpadded = xp.zeros(padded_shape, dtype=g.dtype)
        for _, window in _windows(dpadded, kernel, stride, out_hw):
            dpadded[window] += g
        ph, pw = padding
        dx = dpadded[:, :, ph : ph + x_shape[2], pw : pw + x_shape[3]]
        return (dx.transpose(1, 0, 2, 3),)

    return Tensor.from_op("avg_pool2d", out.transpose(1, 0, 2, 3), backward, x)


def global_avg_pool2d(x):
    """(N, C, H, W) -> (N, C): the mean of each feature map, as in the paper's CIFAR nets."""
    check_inputs("global_avg_pool2d", x)
    check_feature_map("global_avg_pool2d", x)
    n, c, height, width = x.shape
    xp = x.xp
    out = x.data.mean(axis=(2, 3))  # (N, C)

    def backward(g):  # every pixel gets 1/(H*W) of its map's gradient
        share = (g.T / (height * width)).reshape(c, n, 1, 1)
        return (xp.broadcast_to(share, (c, n, height, width)).transpose(1, 0, 2, 3),)

    return Tensor.from_op("global_avg_pool2d", out, backward, x)
