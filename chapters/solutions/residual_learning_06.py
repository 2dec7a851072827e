"""Worked solution to chapter 6, exercise 4: a basic block's forward pass written with tinyres's
ops (training mode, option-A shortcut), from the block's parameters alone."""

import tinyres.nn.functional as F


def option_a_shortcut(x, out_channels, stride):
    """Keep every ``stride``-th pixel, then append zero channels up to ``out_channels``."""
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    extra = out_channels - x.shape[1]
    if extra:
        x = F.pad(x, [(0, 0), (0, extra), (0, 0), (0, 0)])
    return x


def basic_block(x, p, stride):
    """relu(F(x) + shortcut(x)), F = conv-BN-ReLU-conv-BN; batch norm with the batch's statistics."""
    out = F.conv2d(x, p["conv1.weight"], stride=stride, padding=1)
    out = F.relu(F.batch_norm(out, None, None, p["bn1.weight"], p["bn1.bias"], training=True))
    out = F.conv2d(out, p["conv2.weight"], stride=1, padding=1)
    out = F.batch_norm(out, None, None, p["bn2.weight"], p["bn2.bias"], training=True)
    return F.relu(out + option_a_shortcut(x, p["conv1.weight"].shape[0], stride))
