"""Worked solution to chapter 4, exercise 5: layer norm of an (N, C, H, W) tensor, each example
standardised over its own K = C*H*W values, then a per-channel gamma and beta; one op with its
backward."""

from tinyres.nn.functional.common import check_feature_map, check_inputs
from tinyres.tensor import Tensor


def layer_norm(x, gamma, beta, eps=1e-5):
    check_inputs("layer_norm", x, gamma, beta)
    check_feature_map("layer_norm", x)
    xp, channels, example = x.xp, x.shape[1], (1, 2, 3)  # the axes of one example
    mean = x.data.mean(axis=example, keepdims=True)  # (N, 1, 1, 1)
    centered = x.data - mean
    inv_std = 1 / xp.sqrt((centered * centered).mean(axis=example, keepdims=True) + eps)
    x_hat = centered * inv_std
    gamma_c = gamma.data.reshape(1, channels, 1, 1)
    out = gamma_c * x_hat + beta.data.reshape(1, channels, 1, 1)

    def backward(g):
        dbeta = g.sum(axis=(0, 2, 3))
        dgamma = (g * x_hat).sum(axis=(0, 2, 3))
        # through x_hat: g_hat = dL/dx_hat = g gamma. gamma varies *inside* the normalised group
        # (unlike batch norm's, which is one number per group), so it goes inside the two means.
        g_hat = g * gamma_c
        dx = inv_std * (g_hat - g_hat.mean(axis=example, keepdims=True)
                        - x_hat * (g_hat * x_hat).mean(axis=example, keepdims=True))
        return dx, dgamma, dbeta

    return Tensor.from_op("layer_norm", out, backward, x, gamma, beta)
