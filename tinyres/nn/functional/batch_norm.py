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
on the whole batch. Forward takes one Allreduce (each rank's M, mean and sum of squared
deviations, combined as ``global_statistics`` says), backward one more (dbeta and dgamma, which
dx needs over the whole batch): every collective is a point where each rank waits for the
slowest, and two per layer is the fewest this op can have. The op still returns this rank's own
dgamma and dbeta: the trainer averages parameter gradients over the ranks afterwards, as it does
every other parameter's.

Everything works on the (C, M) channel matrix (see common.py), where each statistic is a row
sum and each channel is independent of the others. So the work is split by channel over the
CPU cores (NumPy's elementwise work runs on one core), and done with in-place operations: every
full-size temporary saved is a pass over memory saved. Those fast kernels are
``_normalize_by_channel`` and ``_gradients_by_channel``, below the op.
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
    _check_batch_norm(x, running_mean, running_var, weight, bias, training, momentum)
    n, channels, height, width = x.shape
    m = n * height * width
    backend = x.backend
    xc = channel_matrix(x.data)  # (C, M)
    gamma, beta = weight.data.reshape(-1, 1), bias.data.reshape(-1, 1)
    synchronized = training and comm is not None and comm.size > 1
    if synchronized:  # the whole batch's statistics; M counts the values on all ranks
        mean, var, m = global_statistics(xc, comm)
        statistics = (mean, var)
    else:
        statistics = None if training else (running_mean.reshape(-1, 1), running_var.reshape(-1, 1))
    # mean, var (the batch's in training), x_hat = (x - mean) inv_std, y = gamma x_hat + beta
    mean, var, inv_std, x_hat, y = _normalize_by_channel(xc, gamma, beta, statistics, eps, backend)
    if training and running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean.reshape(-1)
        running_var *= 1 - momentum
        running_var += (momentum * m / (m - 1)) * var.reshape(-1)

    def whole_batch(dbeta, dgamma):  # the sums dx needs, over every rank's share of the batch
        sums = comm.allreduce(backend.xp.concatenate([dbeta, dgamma]))
        return sums[:channels], sums[channels:]

    # dbeta = sum(g), dgamma = sum(g x_hat), dx = gamma inv_std (g - dbeta / M - x_hat dgamma / M)
    def backward(g):
        dx, dgamma, dbeta = _gradients_by_channel(channel_matrix(g), x_hat, gamma, inv_std, training, m, backend,
                                                  whole_batch if synchronized else None)
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


def _gradients_by_channel(g, x_hat, gamma, inv_std, training, m, backend, whole_batch=None):
    """The backward's fast kernel, on the (C, M) matrix ``g``: dbeta and dgamma, then dx, by
    in-place passes, the channels split over the CPU cores. ``whole_batch(dbeta, dgamma)`` gives
    their sums over all ranks when the batch is synchronized (dx needs those; the returned dbeta
    and dgamma stay this rank's)."""
    xp, channels = backend.xp, g.shape[0]
    dx, dgamma, dbeta = xp.empty_like(g), xp.empty((channels, 1), g.dtype), xp.empty((channels, 1), g.dtype)

    def parameter_gradients(part):  # one worker's share, a slice of the channels
        dbeta[part] = g[part].sum(axis=1, keepdims=True)
        dgamma[part] = xp.einsum("cm,cm->c", g[part], x_hat[part]).reshape(-1, 1)

    backend.parallel_map(parameter_gradients, split(channels, backend.workers))
    sum_g, sum_g_x_hat = (dbeta, dgamma) if whole_batch is None else whole_batch(dbeta, dgamma)

    def input_gradient(part):
        if training:  # dx = gamma inv_std (g - dbeta/M - x_hat dgamma/M)
            xp.multiply(x_hat[part], -sum_g_x_hat[part] / m, out=dx[part])
            dx[part] += g[part]
            dx[part] -= sum_g[part] / m
            dx[part] *= gamma[part] * inv_std[part]
        else:  # the statistics are constants: y is an affine function of x
            xp.multiply(g[part], gamma[part] * inv_std[part], out=dx[part])

    backend.parallel_map(input_gradient, split(channels, backend.workers))
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


def global_statistics(xc, comm):
    """(mean, var, M) of the rows of the (C, M_rank) matrix ``xc`` over the same rows on every rank
    of ``comm``: M is the number of values of a row on all ranks (a 0-d array), mean and var are
    (C, 1) arrays. ONE Allreduce. Each rank r takes its own count M_r, mean m_r and sum of squared
    deviations S_r = sum((x - m_r)^2) (two passes, as for one process), writes them into its own
    row of a zero (ranks, 2C + 1) buffer, and the sum over ranks hands every rank every row. Then,
    the same on every rank (Chan, Golub & LeVeque's pairwise update, for all ranks at once):

        M = sum_r M_r,   mean = sum_r M_r m_r / M,   var = sum_r (S_r + M_r (m_r - mean)^2) / M

    Unlike sum(x^2) / M - mean^2, nothing here cancels when |mean| is large against the std."""
    xp = backend_of(xc).xp
    channels, m_rank = xc.shape
    mean_rank = xc.mean(axis=1, keepdims=True)
    centered = xc - mean_rank
    rows = xp.zeros((comm.size, 1 + 2 * channels), xc.dtype)
    rows[comm.rank] = xp.concatenate([xp.full(1, m_rank, xc.dtype), mean_rank.reshape(-1),
                                      xp.einsum("cm,cm->c", centered, centered)])
    # every rank's row, on every rank (the others' rows were zero); an Allreduce, not
    # comm.allgather, because that one pickles Python values on the host while this buffer stays
    # on the backend's device (NCCL on GPUs)
    rows = comm.allreduce(rows)
    counts, means, deviations = rows[:, :1], rows[:, 1 : 1 + channels], rows[:, 1 + channels :]
    m = counts.sum()
    mean = (counts * means).sum(axis=0) / m
    var = (deviations + counts * (means - mean) ** 2).sum(axis=0) / m
    return mean.reshape(-1, 1), var.reshape(-1, 1), m
