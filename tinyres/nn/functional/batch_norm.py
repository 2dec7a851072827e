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

Everything works on the (C, M) channel matrix (see common.py), so each statistic is a row sum.
"""

from tinyres.nn.functional.common import channel_matrix, check_feature_map, check_inputs
from tinyres.tensor import Tensor


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum=0.1, eps=1e-5):
    """Batch norm of an (N, C, H, W) tensor.

    Args:
        running_mean, running_var: (C,) arrays on x's backend, updated in place when training.
            May be None in training (then no running statistics are kept).
        weight, bias: the (C,) tensors gamma and beta.
        training: use (and update with) the batch's statistics, else the running ones.
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
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: evaluation (training=False) needs running_mean and running_var")
    xp = x.xp
    xc = channel_matrix(x.data)  # (C, M)
    gamma, beta = weight.data.reshape(-1, 1), bias.data.reshape(-1, 1)

    if training:
        mean = xc.mean(axis=1, keepdims=True)
        x_hat = xc - mean
        var = xp.einsum("cm,cm->c", x_hat, x_hat).reshape(-1, 1) / m
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean.reshape(-1)
            running_var *= 1 - momentum
            running_var += (momentum * m / (m - 1)) * var.reshape(-1)
    else:
        mean, var = running_mean.reshape(-1, 1), running_var.reshape(-1, 1)
        x_hat = xc - mean
    inv_std = 1 / xp.sqrt(var + eps)
    x_hat *= inv_std
    y = x_hat * gamma  # (in-place steps below save full-size temporaries: each costs a pass)
    y += beta

    def backward(g):
        g = channel_matrix(g)
        dbeta = g.sum(axis=1, keepdims=True)
        dgamma = xp.einsum("cm,cm->c", g, x_hat).reshape(-1, 1)
        if training:  # dx = gamma inv_std (g - dbeta/M - x_hat dgamma/M), in place
            dx = x_hat * (-dgamma / m)
            dx += g
            dx -= dbeta / m
            dx *= gamma * inv_std
        else:  # the statistics are constants: y is an affine function of x
            dx = g * (gamma * inv_std)
        dx = dx.reshape(channels, n, height, width).transpose(1, 0, 2, 3)
        return dx, dgamma.reshape(-1), dbeta.reshape(-1)

    y = y.reshape(channels, n, height, width).transpose(1, 0, 2, 3)
    return Tensor.from_op("batch_norm", y, backward, x, weight, bias)
