"""2-D convolution by im2col: a convolution is one matrix product over unfolded patches.

For input x (N, C, H, W) and weights w (O, C, kh, kw), output pixel (n, o, h, w) is

    y[n, o, h, w] = sum_{c, i, j} w[o, c, i, j] * x_pad[n, c, h*sh + i, w*sw + j]

im2col copies, for every kernel offset (i, j), the strided slice x_pad[:, :, i::sh, j::sw] into
the rows (c, i, j) of a matrix `cols` whose columns are the output pixels (n, h, w). Then

    Y  = W @ cols              W: (O, C*kh*kw)   cols: (C*kh*kw, N*Ho*Wo)   Y: (O, N*Ho*Wo)
    dW = dY @ cols^T           (the same patches, met by the output gradient)

and the input gradient is a convolution too. Each input pixel received w[o, c, i, j] times its
value in every output it fed, so

    dx[n, c, y, x] = sum_{o, i, j} w[o, c, i, j] * dy[n, o, (y + p - i)/s, (x + p - j)/s]

(terms with a fractional or out-of-range index are zero). For stride 1 that is the output
gradient padded by k-1-p and correlated with the kernel flipped in space and transposed in
channels: im2col of dY and one more matrix product. The same unfolded dY also gives dW (a
product with the input itself), so a stride-1 backward needs one im2col, not two. For other
strides dX is col2im(W^T dY), the adjoint of im2col, which adds every column entry back onto
the pixel it was copied from, and dW uses the patches of x again.

Why this layout. Everything is channel-major, (C, N, H, W) in memory (see common.py): cols is
filled by one slice copy per kernel offset whose inner runs are whole image rows, Y comes out of
the product already channel-major, and no transpose is ever needed. benchmarks/README.md has the
measurements (benchmarks/conv_formulations.py, 2-core AVX2, batch 128): on the 16-channel 32x32
layers, where a CIFAR ResNet spends most of its time, this forward was 1.05-1.5x faster than an
NCHW sliding-window einsum, 1.5-1.9x faster than an NHWC "shifted GEMM" (``nhwc_shifted_gemm``
there) and ~15x faster than im2col by fancy indexing over four runs; on 32 and 64 channels the
fast ones are within the machine's noise of each other. For stride 1 the input gradient as a
convolution beats col2im (scatter-adding W^T dY back onto the pixels, whose adds read and write
the image kh*kw times) by ~1.4x; strided convolutions use col2im, since the convolution would
first have to spread dY out with zeros.

Three more things make it fast on NumPy; none changes the math:
- the copies of im2col are split by channel over all CPU cores (``backend.parallel_map``):
  NumPy copies use one core, the matrix products already use all of them;
- the big temporaries (the cols matrix, padded images) live in reusable scratch buffers
  (``_unfold_into_scratch``, ``_padded_scratch``, at the end of this file): allocating a fresh
  75 MB array costs ~10 ms of page faults per call on the CPU;
- when the output has the input's size (stride 1, 3x3 with padding 1), each row of cols is a
  whole channel shifted by a fixed number of pixels and masked where the shift reads padding, in
  one pass (``_im2col_same_size``).
"""

import math
import threading

from tinyres.backend import backend_of
from tinyres.nn.functional.common import (
    channel_major,
    channel_matrix,
    check_feature_map,
    check_inputs,
    pair,
    split,
)
from tinyres.tensor import Tensor


def output_size(size, kernel, stride, padding):
    """Positions a kernel takes along one axis: floor((size + 2 padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x, kernel_size, stride=(1, 1), padding=(0, 0), out=None):
    """Unfold the patches of an (N, C, H, W) array into a (C*kh*kw, N*Ho*Wo) matrix:

        cols[(c, i, j), (n, h, w)] = x_pad[n, c, h*sh + i, w*sw + j]

    ``out``, if given, is a (C*kh*kw, N*Ho*Wo) array to fill (conv2d passes a scratch buffer).
    """
    backend = backend_of(x)
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size, "kernel_size", "im2col"), pair(stride, "stride", "im2col"), pair(padding, "padding", "im2col")
    n, channels, height, width = x.shape
    out_h, out_w = output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)
    if out is None:
        out = backend.xp.empty((channels * kh * kw, n * out_h * out_w), dtype=x.dtype)
    cols = out.reshape(channels, kh, kw, n, out_h, out_w)
    source = channel_major(x)  # (C, N, H, W)
    padded = _padded_scratch(source, (ph, pw), backend)  # its zero border only: filled below

    def fill(part):  # one worker's share: a slice of the channels, every kernel offset
        if padded is not source:
            padded[part, :, ph : ph + height, pw : pw + width] = source[part]
        for i in range(kh):
            for j in range(kw):
                cols[part, i, j] = padded[part, :, i : i + sh * out_h : sh, j : j + sw * out_w : sw]

    backend.parallel_map(fill, split(channels, backend.workers))
    return out


def col2im(cols, x_shape, kernel_size, stride=(1, 1), padding=(0, 0)):
    """The adjoint of im2col: add each entry of a (C*kh*kw, N*Ho*Wo) matrix back onto the pixel
    of an (N, C, H, W) image it would have been copied from (overlapping patches add up)."""
    backend = backend_of(cols)
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size, "kernel_size", "col2im"), pair(stride, "stride", "col2im"), pair(padding, "padding", "col2im")
    n, channels, height, width = x_shape
    out_h, out_w = output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)
    cols = cols.reshape(channels, kh, kw, n, out_h, out_w)
    padded = backend.xp.zeros((channels, n, height + 2 * ph, width + 2 * pw), dtype=cols.dtype)

    def add_back(part):  # one worker's share: a slice of the channels, every kernel offset
        for i in range(kh):
            for j in range(kw):
                padded[part, :, i : i + sh * out_h : sh, j : j + sw * out_w : sw] += cols[part, i, j]

    backend.parallel_map(add_back, split(channels, backend.workers))
    return padded[:, :, ph : ph + height, pw : pw + width].transpose(1, 0, 2, 3)


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in every deep learning library).

    Args:
        x: (N, C, H, W) input.
        weight: (O, C, kh, kw) kernels.
        bias: (O,) or None.
        stride, padding: an int or an (h, w) pair; padding is with zeros on both sides.
    Returns:
        (N, O, Ho, Wo) with Ho = floor((H + 2 padding - kh) / stride) + 1, likewise Wo.
    """
    tensors = (x, weight) if bias is None else (x, weight, bias)
    check_inputs("conv2d", *tensors)
    check_feature_map("conv2d", x)
    stride, padding = pair(stride, "stride", "conv2d"), pair(padding, "padding", "conv2d")
    _check_geometry(x.shape, weight.shape, None if bias is None else bias.shape, stride, padding)
    n, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = output_size(height, kh, stride[0], padding[0]), output_size(width, kw, stride[1], padding[1])
    x_data, w_matrix = x.data, weight.data.reshape(out_channels, -1)
    y = w_matrix @ _unfold_into_scratch(x_data, (kh, kw), stride, padding)  # Y = W cols: (O, N*Ho*Wo)
    if bias is not None:
        y += bias.data.reshape(-1, 1)
    y = y.reshape(out_channels, n, out_h, out_w).transpose(1, 0, 2, 3)
    need_dx, need_dw = x.requires_grad, weight.requires_grad

    def backward(g):
        g_matrix = channel_matrix(g)  # (O, N*Ho*Wo)
        dx = dw = None
        if need_dx and stride == (1, 1) and max(padding) <= min(kh, kw) - 1:
            # Unfold dY, padded by k-1-p: cols_g[(o, i, j), (n, y, x)] = dY_pad[o, n, y + i, x + j].
            # Both gradients are products with it, so one im2col serves both:
            #   dX = W_flipped @ cols_g   (dY correlated with W flipped in space, transposed in channels)
            #   dW[o, c, i, j] = (X @ cols_g^T)[c, (o, k-1-i, k-1-j)]   (X: the (C, N*H*W) input)
            cols_g = _unfold_into_scratch(g, (kh, kw), (1, 1), (kh - 1 - padding[0], kw - 1 - padding[1]))
            w_flipped = weight.data[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(channels, -1)
            dx = (w_flipped @ cols_g).reshape(channels, n, height, width).transpose(1, 0, 2, 3)
            if need_dw:
                dw_flipped = (channel_matrix(x_data) @ cols_g.T).reshape(channels, out_channels, kh, kw)
                dw = dw_flipped[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).copy()
        else:  # strided, padded beyond k - 1, or no dX wanted (a network's first layer)
            if need_dx:  # dX = col2im(W^T dY): each patch's gradient added back onto its pixels
                dx = col2im(w_matrix.T @ g_matrix, x_data.shape, (kh, kw), stride, padding)
            if need_dw:  # dW = dY cols^T  (cols recomputed: kept, it would be kh*kw times x's size)
                dw = (g_matrix @ _unfold_into_scratch(x_data, (kh, kw), stride, padding).T).reshape(weight.shape)
        if bias is None:
            return dx, dw
        return dx, dw, g_matrix.sum(axis=1)  # db = dY summed over batch and pixels

    return Tensor.from_op("conv2d", y, backward, *tensors)


# ----- the fast path: temporaries in reused buffers ------------------------------------------
def _unfold_into_scratch(array, kernel, stride, padding):
    """im2col of ``array`` into the reused buffer of conv2d, valid until the next call (conv2d
    uses each result in one matrix product, at once)."""
    (kh, kw), backend = kernel, backend_of(array)
    n, channels, height, width = array.shape
    out_h, out_w = output_size(height, kh, stride[0], padding[0]), output_size(width, kw, stride[1], padding[1])
    out = _scratch.get("conv2d.cols", (channels * kh * kw, n * out_h * out_w), array.dtype, backend)
    if stride == (1, 1) and (out_h, out_w) == (height, width):
        return _im2col_same_size(array, kernel, padding, out)
    return im2col(array, kernel, stride, padding, out=out)


def _im2col_same_size(x, kernel, padding, out):
    """im2col for a stride-1 convolution whose output has the input's size (3x3 with padding 1:
    almost every convolution of a ResNet, forward and backward), in whole-channel passes.

    Flatten each channel of the channel-major input over (n, h, w). Kernel offset (i, j) reads
    the pixel (h + di, w + dj), di = i - ph, dj = j - pw, which in the flat index is the pixel
    s = di * W + dj further on. So row (c, i, j) of cols is channel c shifted by s, times a mask
    that is 1 where (h + di, w + dj) lies inside the image and 0 where it lies in the padding
    (there the shifted read landed on a neighbouring row or image): one pass per row, instead of
    one copy per image row out of a padded image."""
    (kh, kw), (ph, pw), backend = kernel, padding, backend_of(x)
    n, channels, height, width = x.shape
    size = n * height * width
    flat = channel_matrix(x)  # (C, N*H*W): a view, as activations are stored channel-major
    cols = out.reshape(channels, kh, kw, size)
    masks = {(i, j): _inside_mask(n, height, width, i - ph, j - pw, x.dtype, backend) for i in range(kh) for j in range(kw)}

    def fill(part):  # one worker's share: a slice of the channels, every kernel offset
        for i in range(kh):
            for j in range(kw):
                s, row = (i - ph) * width + (j - pw), cols[part, i, j]
                ahead, behind = min(size, max(0, s)), min(size, max(0, -s))
                # row[p] = flat[p + s] * inside[p], for the p whose p + s exists
                backend.xp.multiply(flat[part, ahead : size - behind], masks[i, j][behind : size - ahead],
                                    out=row[:, behind : size - ahead])
                row[:, :behind] = 0  # (the ends no shifted read reached: padding as well)
                row[:, size - ahead :] = 0

    backend.parallel_map(fill, split(channels, backend.workers))
    return out


def _inside_mask(n, height, width, di, dj, dtype, backend):
    """1 where pixel (h + di, w + dj) is inside the image, 0 where it is in the padding, for
    every (n, h, w), flattened; kept for the next call with the same geometry."""
    key = ("conv2d.inside", n, height, width, di, dj, str(dtype), backend.name)
    mask = _masks.get(key)
    if mask is None:
        xp = backend.xp
        rows, columns = xp.arange(height).reshape(-1, 1) + di, xp.arange(width).reshape(1, -1) + dj
        inside = ((rows >= 0) & (rows < height) & (columns >= 0) & (columns < width)).astype(dtype)
        mask = _masks[key] = xp.ascontiguousarray(xp.broadcast_to(inside, (n, height, width))).reshape(-1)
    return mask


_masks = {}


def _padded_scratch(source, padding, backend):
    """A reused (C, N, H + 2 ph, W + 2 pw) buffer for the padded image of the channel-major
    ``source``, with its border zeroed and its interior left for the caller to fill; ``source``
    itself when there is no padding."""
    (ph, pw), (channels, n, height, width) = padding, source.shape
    if not (ph or pw):
        return source
    padded = _scratch.get("im2col.padded", (channels, n, height + 2 * ph, width + 2 * pw), source.dtype, backend)
    _zero_border(padded, ph, pw)
    return padded


def _zero_border(padded, ph, pw):
    """Zero the padding frame of a reused buffer (its interior is about to be overwritten)."""
    if ph:
        padded[:, :, :ph] = 0
        padded[:, :, -ph:] = 0
    if pw:
        padded[:, :, :, :pw] = 0
        padded[:, :, :, -pw:] = 0


class _Scratch:
    """Reusable buffers for temporaries that die inside one op call.

    ``get(name, shape, ...)`` returns an uninitialised array of that shape carved from a buffer
    kept under ``name``, grown when too small. The contents are overwritten by the next ``get``
    of the same name, so a caller must be done with it before calling anything that may use it
    (conv2d's forward and backward use each buffer once, to feed one matrix product). Each
    thread has buffers of its own, so convolutions in two threads never share one.
    """

    def __init__(self):
        self._local = threading.local()

    @property
    def buffers(self):
        if not hasattr(self._local, "buffers"):
            self._local.buffers = {}
        return self._local.buffers

    def get(self, name, shape, dtype, backend):
        key = (name, backend.name, str(dtype))
        size = math.prod(shape)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.size < size:
            buffer = self.buffers[key] = backend.xp.empty(size, dtype=dtype)
        return buffer[:size].reshape(shape)

    def clear(self):
        self.buffers.clear()


_scratch = _Scratch()


def release_scratch():
    """Free conv2d's scratch buffers and masks (they are otherwise kept for the next call)."""
    _scratch.clear()
    _masks.clear()


def _check_geometry(x_shape, w_shape, b_shape, stride, padding):
    if len(w_shape) != 4:
        raise ValueError(f"conv2d: weight must be 4-D (out_channels, in_channels, kh, kw), got shape {w_shape}")
    n, c, height, width = x_shape
    out_channels, in_channels, kh, kw = w_shape
    if c != in_channels:
        raise ValueError(
            f"conv2d: input has {c} channels (shape {x_shape}) but weight {w_shape} expects "
            f"{in_channels}; the second axis of both must agree"
        )
    if min(stride) < 1 or min(padding) < 0 or min(kh, kw) < 1:
        raise ValueError(f"conv2d: need stride >= 1, padding >= 0 and kernel >= 1, got stride {stride}, padding {padding}, kernel {(kh, kw)}")
    if kh > height + 2 * padding[0] or kw > width + 2 * padding[1]:
        raise ValueError(
            f"conv2d: kernel {kh}x{kw} is larger than the padded input "
            f"{height + 2 * padding[0]}x{width + 2 * padding[1]} (input {height}x{width}, padding "
            f"{padding}); use a smaller kernel or more padding"
        )
    if b_shape is not None and tuple(b_shape) != (out_channels,):
        raise ValueError(f"conv2d: bias must have shape ({out_channels},), got {b_shape}")
