"""Batch normalisation (Ioffe & Szegedy, 2015) over the channels of a feature map.

Per channel c, over the M = N*H*W values of the batch:

    mean = sum(x) / M,   var = sum((x - mean)^2) / M,   x_hat = (x - mean) / sqrt(var + eps)
    y = gamma * x_hat + beta

In training the batch's statistics are used and the running estimates are updated,
``running = (1 - momentum) * running + momentum * batch`` (the unbiased variance, M/(M-1) var, as
PyTorch does); in evaluation the running estimates replace the batch's.

Backward in training, with g = dL/dy (every x moves mean and var too, hence the two extra terms):

    dbeta = sum(g),   dgamma = sum(g * x_hat)
    dx = gamma / sqrt(var + eps) * (g - dbeta / M - x_hat * dgamma / M)

Everything works on the (C, M) channel matrix (see common.py), where each statistic is a row
sum and each channel is independent of the others. So the work is split by channel over the
CPU cores (NumPy's elementwise work runs on one core), and done with in-place operations: every
full-size temporary saved is a pass over memory saved. Those fast kernels are
``_normalize_by_channel`` and ``_gradients_by_channel``, below the op.
"""

import numbers

from tinyres.nn.functional.common import channel_matrix, check_feature_map, check_inputs, split
from tinyres.tensor import Tensor


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum=0.1, eps=1e-5):
    """Batch norm of an (N, C, H, W) tensor.

    Args:
        running_mean, running_var: (C,) arrays on x's backend, updated in place when training.
            May be None in training (then no running statistics are kept).
        weight, bias: the (C,) tensors gamma and beta.
        training: use (and update with) the batch's statistics, else the running ones.
    """
    _check_batch_norm(x, running_mean, running_var, weight, bias, training, momentum)
    n, channels, height, width = x.shape
    m = n * height * width
    backend = x.backend
    xc = channel_matrix(x.data)  # (C, M)
    gamma, beta = weight.data.reshape(-1, 1), bias.data.reshape(-1, 1)
    statistics = None if training else (running_mean.reshape(-1, 1), running_var.reshape(-1, 1))
    # mean, var (the batch's in training), x_hat = (x - mean) inv_std, y = gamma x_hat + beta
    mean, var, inv_std, x_hat, y = _normalize_by_channel(xc, gamma, beta, statistics, eps, backend)
    if training and running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean.reshape(-1)
        running_var *= 1 - momentum
        running_var += (momentum * m / (m - 1)) * var.reshape(-1)

    def backward(g):  # dbeta = sum(g), dgamma = sum(g x_hat), dx: see the module docstring
        dx, dgamma, dbeta = _gradients_by_channel(channel_matrix(g), x_hat, gamma, inv_std, training, backend)
        dx = dx.reshape(channels, n, height, width).transpose(1, 0, 2, 3)
        return dx, dgamma.reshape(-1), dbeta.reshape(-1)

    y = y.reshape(channels, n, height, width).transpose(1, 0, 2, 3)
    return Tensor.from_op("batch_norm", y, backward, x, weight, bias)


def _normalize_by_channel(xc, gamma, beta, statistics, eps, backend):
    """The forward's fast kernel, on the (C, M) matrix ``xc``: the batch's mean and var (or the
    given ``statistics``), then x_hat and y, by in-place passes, the channels split over the
    CPU cores. Returns mean, var, inv_std (each (C, 1)), x_hat and y."""
    xp, channels, m = backend.xp, xc.shape[0], xc.shape[1]
    x_hat, y = xp.empty_like(xc), xp.empty_like(xc)
    if statistics is None:
        mean, var = xp.empty((channels, 1), xc.dtype), xp.empty((channels, 1), xc.dtype)
    else:
        mean, var = statistics
    inv_std = xp.empty((channels, 1), xc.dtype)

    def normalize(part):  # one worker's share, a slice of the channels: statistics, x_hat, y
        if statistics is None:
            mean[part] = xc[part].mean(axis=1, keepdims=True)
        xp.subtract(xc[part], mean[part], out=x_hat[part])
        if statistics is None:
            var[part] = xp.einsum("cm,cm->c", x_hat[part], x_hat[part]).reshape(-1, 1) / m
        inv_std[part] = 1 / xp.sqrt(var[part] + eps)
        x_hat[part] *= inv_std[part]
        xp.multiply(x_hat[part], gamma[part], out=y[part])
        y[part] += beta[part]

    backend.parallel_map(normalize, split(channels, backend.workers))
    return mean, var, inv_std, x_hat, y


def _gradients_by_channel(g, x_hat, gamma, inv_std, training, backend):
    """The backward's fast kernel, on the (C, M) matrix ``g``: dx, dgamma and dbeta by
    in-place passes, the channels split over the CPU cores."""
    xp, channels, m = backend.xp, g.shape[0], g.shape[1]
    dx, dgamma, dbeta = xp.empty_like(g), xp.empty((channels, 1), g.dtype), xp.empty((channels, 1), g.dtype)

    def gradients(part):  # one worker's share, a slice of the channels
        dbeta[part] = g[part].sum(axis=1, keepdims=True)
        dgamma[part] = xp.einsum("cm,cm->c", g[part], x_hat[part]).reshape(-1, 1)
        if training:  # dx = gamma inv_std (g - dbeta/M - x_hat dgamma/M)
            xp.multiply(x_hat[part], -dgamma[part] / m, out=dx[part])
            dx[part] += g[part]
            dx[part] -= dbeta[part] / m
            dx[part] *= gamma[part] * inv_std[part]
        else:  # the statistics are constants: y is an affine function of x
            xp.multiply(g[part], gamma[part] * inv_std[part], out=dx[part])

    backend.parallel_map(gradients, split(channels, backend.workers))
    return dx, dgamma, dbeta


def _check_batch_norm(x, running_mean, running_var, weight, bias, training, momentum):
    check_inputs("batch_norm", x, weight, bias)
    check_feature_map("batch_norm", x)
    n, channels, height, width = x.shape
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and tuple(t.shape) != (channels,):
            raise ValueError(f"batch_norm: {name} must have shape ({channels},) for input {x.shape}, got {tuple(t.shape)}")
    if training and n * height * width < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, input is {x.shape}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    if not (isinstance(momentum, numbers.Real) and 0 <= momentum <= 1):
        raise ValueError(f"batch_norm: momentum must be a number between 0 and 1, got {momentum!r}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: evaluation (training=False) needs running_mean and running_var")
