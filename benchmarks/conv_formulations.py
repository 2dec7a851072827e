"""Why conv2d is written the way it is: the same 3x3, padding-1 convolution in several
formulations, timed on the stage shapes of a CIFAR ResNet (NumPy, float32).

    python benchmarks/conv_formulations.py [--batch-size 128]

Forward, then the input gradient two ways. Best of --repeat, milliseconds. The first rows are
the alternatives tinyres does not use; "tinyres" is tinyres.nn.functional.conv2d itself: its
forward, and the backward it records (dX only, forward not included).
"""

import argparse

import tinyres  # noqa: F401  (before numpy: sets OPENBLAS_THREAD_TIMEOUT)
import numpy as np

import tinyres.nn.functional as F
from tinyres.nn.functional.common import split
from tinyres.nn.functional.conv import col2im
from timing import best_ms  # chapters/03_convolution.ipynb imports best_ms from this module too

SHAPES = [(16, 32), (32, 16), (64, 8)]  # (channels, height = width)


def nchw_fancy_index_im2col(x, w):
    """Textbook im2col: one gather with precomputed index arrays (NCHW)."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    i = (np.arange(3)[:, None] + np.arange(h)[None, :])  # (3, H)
    j = (np.arange(3)[:, None] + np.arange(wd)[None, :])
    cols = xp[:, :, i[:, None, :, None], j[None, :, None, :]]  # (N, C, 3, 3, H, W)
    return (w.reshape(w.shape[0], -1) @ cols.reshape(n, c * 9, h * wd)).reshape(n, -1, h, wd)


def nchw_sliding_window_einsum(x, w):
    """A strided view of all patches and one einsum (NCHW)."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # (N, C, H, W, 3, 3)
    return np.einsum("nchwij,ocij->nohw", patches, w, optimize=True)


def nhwc_shifted_gemm(x_nhwc, w):
    """The "shifted GEMM": padded NHWC rows, one GEMM per kernel offset on a row slice."""
    n, h, wd, c = x_nhwc.shape
    xp = np.zeros((n, h + 2, wd + 2, c), np.float32)
    xp[:, 1:-1, 1:-1] = x_nhwc
    flat = xp.reshape(-1, c)
    rows = flat.shape[0] - 2 * (wd + 2) - 2
    w_hwio = w.transpose(2, 3, 1, 0)
    out = flat[:rows] @ w_hwio[0, 0]
    for i in range(3):
        for j in range(3):
            if i or j:
                shift = i * (wd + 2) + j
                out += flat[shift : shift + rows] @ w_hwio[i, j]
    full = np.empty((n * (h + 2) * (wd + 2), w.shape[0]), np.float32)
    full[:rows] = out
    return full.reshape(n, h + 2, wd + 2, -1)[:, :h, :wd]


def channel_major_wide_im2col(x, w):
    """im2col whose columns run over the padded width (W+2 per row, the last 2 of each row
    garbage): in the flattened padded image every kernel offset is then one contiguous run per
    image, not one run per image row. The product carries the garbage columns; compaction drops
    them. x is channel-major (see tinyres/nn/functional/common.py)."""
    backend = tinyres.get_backend("numpy")
    n, c, h, wd = x.shape
    row = wd + 2
    padded = np.zeros((c, n, (h + 2) * row + 2), np.float32)  # +2: the last row's garbage overruns
    image = padded[:, :, : (h + 2) * row].reshape(c, n, h + 2, row)
    cols = np.empty((c, 3, 3, n, h * row), np.float32)

    def fill(channels):
        image[channels, :, 1:-1, 1:-1] = x.transpose(1, 0, 2, 3)[channels]
        for i in range(3):
            for j in range(3):
                cols[channels, i, j] = padded[channels, :, i * row + j : i * row + j + h * row]

    backend.parallel_map(fill, split(c, backend.workers))
    wide = (w.reshape(w.shape[0], -1) @ cols.reshape(c * 9, -1)).reshape(-1, n, h, row)
    out = np.empty(wide.shape[:3] + (wd,), np.float32)

    def compact(channels):
        out[channels] = wide[channels, :, :, :wd]

    backend.parallel_map(compact, split(w.shape[0], backend.workers))
    return out.transpose(1, 0, 2, 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tinyres.backend.retain_freed_memory()
    n = args.batch_size
    rng = np.random.default_rng(0)
    print(f"# 3x3 conv, padding 1, batch {n}, float32, best of {args.repeat}, milliseconds")
    print(f"{'formulation':58s}" + "".join(f"{f'{c}ch {s}x{s}':>12s}" for c, s in SHAPES))
    rows = {}
    for c, s in SHAPES:
        x = rng.standard_normal((n, c, s, s)).astype(np.float32)
        w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
        x_cm = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)  # channel-major
        x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        xt, wt = tinyres.Tensor(x_cm), tinyres.Tensor(w)
        g_cm = np.ascontiguousarray(rng.standard_normal((c, n, s, s)).astype(np.float32))
        g = g_cm.transpose(1, 0, 2, 3)  # dY as (N, C, H, W), stored channel-major as it arrives in training
        w_matrix = w.reshape(c, -1)
        # The backward function conv2d records for a stride-1 layer, called on dY: exactly what a
        # training step runs for dX (the weight needs no gradient here, so dX alone, like the
        # col2im row; the forward is not timed, and no leaf gradient is accumulated)
        tinyres_input_grad = F.conv2d(tinyres.Tensor(x_cm, requires_grad=True), wt, padding=1).grad_fn.backward

        def tinyres_forward():
            with tinyres.no_grad():
                F.conv2d(xt, wt, padding=1)

        def col2im_input_grad():
            return col2im(w_matrix.T @ g_cm.reshape(c, -1), x.shape, (3, 3), (1, 1), (1, 1))

        cases = {
            "forward: NCHW im2col by fancy indexing + matmul": lambda: nchw_fancy_index_im2col(x, w),
            "forward: NCHW sliding_window_view + einsum": lambda: nchw_sliding_window_einsum(x, w),
            "forward: NHWC shifted GEMM (9 GEMMs on row slices)": lambda: nhwc_shifted_gemm(x_nhwc, w),
            "forward: channel-major wide im2col + 1 GEMM + compaction": lambda: channel_major_wide_im2col(x_cm, w),
            "forward: tinyres (channel-major im2col + 1 GEMM)": tinyres_forward,
            "input grad: col2im(W^T dY)": col2im_input_grad,
            "input grad: tinyres (conv of dY with flipped W)": lambda: tinyres_input_grad(g),
        }
        for name, fn in cases.items():
            rows.setdefault(name, []).append(best_ms(fn, args.repeat))
        reference = nchw_sliding_window_einsum(x, w)
        assert np.allclose(nchw_fancy_index_im2col(x, w), reference, atol=1e-3)
        assert np.allclose(nhwc_shifted_gemm(x_nhwc, w).transpose(0, 3, 1, 2), reference, atol=1e-3)
        assert np.allclose(channel_major_wide_im2col(x_cm, w), reference, atol=1e-3)
        assert np.allclose(F.conv2d(xt, wt, padding=1).numpy(), reference, atol=1e-3)
        # dX is dY correlated with W flipped in space and transposed in channels (padding 1)
        dx_reference = nchw_sliding_window_einsum(g, np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)))
        assert np.allclose(col2im_input_grad(), dx_reference, atol=1e-3)
        assert np.allclose(tinyres_input_grad(g)[0], dx_reference, atol=1e-3)
    for name, times in rows.items():
        print(f"{name:58s}" + "".join(f"{t:12.1f}" for t in times), flush=True)


if __name__ == "__main__":
    main()
