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

Synchronized over processes (``comm``, see tinyres/distributed.py): with the batch split over
ranks, every sum above runs over all ranks' values, so N ranks compute what one process computes
on the whole batch. Forward allreduces sum(x) and M, then sum((x - mean)^2) (two passes, as
here); backward allreduces dbeta and dgamma, which dx needs over the whole batch. The op still
returns this rank's own dgamma and dbeta: the trainer averages parameter gradients over the
ranks afterwards, as it does every other parameter's.

Everything works on the (C, M) channel matrix (see common.py), where each statistic is a row
sum and each channel is independent of the others. So the work is split by channel over the
CPU cores (NumPy's elementwise work runs on one core), and done with in-place operations: every
full-size temporary saved is a pass over memory saved.
"""

import numbers

from tinyres.backend import backend_of
from tinyres.nn.functional.common import channel_matrix, check_feature_map, check_inputs, split
from tinyres.tensor import Tensor


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum=0.1, eps=1e-5, comm=None):
    """Batch norm of an (N, C, H, W) tensor.

    Args:
        running_mean, running_var: (C,) arrays on x's backend, updated in place when training.
            May be None in training (then no running statistics are kept).
        weight, bias: the (C,) tensors gamma and beta.
        training: use (and update with) the batch's statistics, else the running ones.
        comm: a communicator (tinyres.distributed) whose ranks hold the rest of the batch: the
            statistics in training are those of the whole batch. None: this process's images only.
    """
    check_inputs("batch_norm", x, weight, bias)
    check_feature_map("batch_norm", x)
    n, channels, height, width = x.shape
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and tuple(t.shape) != (channels,):
            raise ValueError(f"batch_norm: {name} must have shape ({channels},) for input {x.shape}, got {tuple(t.shape)}")
    m = n * height * width
    if training and m < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, input is {x.shape}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    if not (isinstance(momentum, numbers.Real) and 0 <= momentum <= 1):
        raise ValueError(f"batch_norm: momentum must be a number between 0 and 1, got {momentum!r}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: evaluation (training=False) needs running_mean and running_var")
    backend, xp = x.backend, x.xp
    xc = channel_matrix(x.data)  # (C, M)
    gamma, beta = weight.data.reshape(-1, 1), bias.data.reshape(-1, 1)
    x_hat, y = xp.empty_like(xc), xp.empty_like(xc)
    synchronized = training and comm is not None and comm.size > 1
    local_statistics = training and not synchronized
    if local_statistics:
        mean, var = xp.empty((channels, 1), x.dtype), xp.empty((channels, 1), x.dtype)
    elif synchronized:  # M becomes the number of values over all ranks (a device scalar)
        mean, var, m = global_statistics(xc, comm)
    else:
        mean, var = running_mean.reshape(-1, 1), running_var.reshape(-1, 1)
    inv_std = xp.empty((channels, 1), x.dtype)

    def normalize(c):  # one worker's channels c: statistics, x_hat, y
        if local_statistics:
            mean[c] = xc[c].mean(axis=1, keepdims=True)
        xp.subtract(xc[c], mean[c], out=x_hat[c])
        if local_statistics:
            var[c] = xp.einsum("cm,cm->c", x_hat[c], x_hat[c]).reshape(-1, 1) / m
        inv_std[c] = 1 / xp.sqrt(var[c] + eps)
        x_hat[c] *= inv_std[c]
        xp.multiply(x_hat[c], gamma[c], out=y[c])
        y[c] += beta[c]

    backend.parallel_map(normalize, split(channels, backend.workers))
    if training and running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean.reshape(-1)
        running_var *= 1 - momentum
        running_var += (momentum * m / (m - 1)) * var.reshape(-1)

    def backward(g):
        g = channel_matrix(g)
        dx, dgamma, dbeta = xp.empty_like(g), xp.empty((channels, 1), g.dtype), xp.empty((channels, 1), g.dtype)

        def parameter_gradients(c):  # one worker's channels
            dbeta[c] = g[c].sum(axis=1, keepdims=True)
            dgamma[c] = xp.einsum("cm,cm->c", g[c], x_hat[c]).reshape(-1, 1)

        backend.parallel_map(parameter_gradients, split(channels, backend.workers))
        sum_g, sum_g_x_hat = dbeta, dgamma  # over the whole batch: all ranks' when synchronized
        if synchronized:
            sums = comm.allreduce(xp.concatenate([dbeta, dgamma]))
            sum_g, sum_g_x_hat = sums[:channels], sums[channels:]

        def input_gradient(c):
            if training:  # dx = gamma inv_std (g - dbeta/M - x_hat dgamma/M)
                xp.multiply(x_hat[c], -sum_g_x_hat[c] / m, out=dx[c])
                dx[c] += g[c]
                dx[c] -= sum_g[c] / m
                dx[c] *= gamma[c] * inv_std[c]
            else:  # the statistics are constants: y is an affine function of x
                xp.multiply(g[c], gamma[c] * inv_std[c], out=dx[c])

        backend.parallel_map(input_gradient, split(channels, backend.workers))
        dx = dx.reshape(channels, n, height, width).transpose(1, 0, 2, 3)
        return dx, dgamma.reshape(-1), dbeta.reshape(-1)

    y = y.reshape(channels, n, height, width).transpose(1, 0, 2, 3)
    return Tensor.from_op("batch_norm", y, backward, x, weight, bias)


def global_statistics(xc, comm):
    """(mean, var, M) of the rows of the (C, M_rank) matrix ``xc`` over the same rows on every rank
    of ``comm``: M is the number of values of a row on all ranks (a 0-d array), mean and var are
    (C, 1) arrays. Two passes, as for one process's statistics, so two Allreduces: sum(x) with
    M_rank, then sum((x - mean)^2)."""
    xp = backend_of(xc).xp
    channels, m_rank = xc.shape
    sums = comm.allreduce(xp.concatenate([xc.sum(axis=1), xp.full(1, m_rank, xc.dtype)]))
    m = sums[channels]
    mean = (sums[:channels] / m).reshape(-1, 1)
    centered = xc - mean
    var = comm.allreduce(xp.einsum("cm,cm->c", centered, centered)).reshape(-1, 1) / m
    return mean, var, m
