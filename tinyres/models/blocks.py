"""The building blocks of the paper's networks (He et al., 2015, Figures 2 and 5).

A residual block computes relu(F(x) + shortcut(x)); the plain block of the same shape is just
relu(F(x)). F is two 3x3 convolutions (basic block) or 1x1-3x3-1x1 (bottleneck), each followed by
batch norm, with a ReLU between them.

Shortcuts, for when F changes the shape (A and B in section 3.3; all three compared in section 4.1, "Identity vs. Projection Shortcuts"):
    A: identity, subsampled by the stride, with zero channels added: no parameters. The paper
       does not say where the zeros go; tinyres appends them (``zero_channels="end"``), the
       widely used PyTorch port of the CIFAR networks puts half before and half after the
       input's channels (``"both"``). The two compute different functions from the same
       weights: load that port's weights into a network built with ``zero_channels="both"``.
    B: a 1x1 convolution (+ batch norm) where the shape changes, identity elsewhere.
    C: a 1x1 convolution (+ batch norm) on every block.
"""

import tinyres.nn.functional as F
from tinyres import nn


ZERO_CHANNELS = ("end", "both")


class ZeroPadShortcut(nn.Module):
    """Option A: take every ``stride``-th pixel and add zero channels up to ``out_channels``:
    after the input's channels (``zero_channels="end"``) or half before, half after (``"both"``)."""

    def __init__(self, in_channels, out_channels, stride, zero_channels="end"):
        super().__init__()
        self.extra, self.stride, self.zero_channels = out_channels - in_channels, stride, zero_channels
        self.before = self.extra // 2 if zero_channels == "both" else 0

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = F.pad(x, [(0, 0), (self.before, self.extra - self.before), (0, 0), (0, 0)])
        return x

    def extra_repr(self):
        where = "" if self.zero_channels == "end" else f" ({self.zero_channels})"
        return f"stride={self.stride}, zero_channels={self.extra}{where}"


class Identity(nn.Module):
    def forward(self, x):
        return x


def projection(in_channels, out_channels, stride):
    """Options B and C: a strided 1x1 convolution and batch norm."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


def check_shortcut(option, zero_channels="end"):
    """Refuse a shortcut option or zero-channel layout that does not exist (also for a plain net,
    which builds no shortcut but records its settings)."""
    if option not in ("A", "B", "C"):
        raise ValueError(f"shortcut option must be 'A', 'B' or 'C' (paper sections 3.3 and 4.1), got {option!r}")
    if zero_channels not in ZERO_CHANNELS:
        raise ValueError(f"zero_channels must be 'end' (tinyres) or 'both' (the PyTorch port of the CIFAR "
                         f"networks), got {zero_channels!r}")


def make_shortcut(option, in_channels, out_channels, stride, zero_channels="end"):
    changes_shape = stride != 1 or in_channels != out_channels
    check_shortcut(option, zero_channels)
    if option == "C" or (option == "B" and changes_shape):
        return projection(in_channels, out_channels, stride)
    if option == "A" and changes_shape:
        return ZeroPadShortcut(in_channels, out_channels, stride, zero_channels)
    return Identity()


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers (the first strided) with a ReLU between; the shortcut unless plain."""

    expansion = 1

    def __init__(self, in_channels, channels, stride=1, plain=False, shortcut="A", zero_channels="end"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = None if plain else make_shortcut(shortcut, in_channels, channels, stride, zero_channels)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.shortcut is not None:
            out = out + self.shortcut(x)  # F(x) + x
        return F.relu(out)


STRIDE_ON = ("1x1", "3x3")


class Bottleneck(nn.Module):
    """1x1 (reduce) - 3x3 - 1x1 (expand to 4x) conv-BN layers, for ResNet-50/101/152.

    ``stride_on="1x1"`` (the default) puts the stride on the first 1x1 convolution, as in the
    paper's released (Caffe) models: the block subsamples before its 3x3 runs, so the 3x3 works
    on a quarter of the pixels. That is what gives the paper's FLOPs (Table 1: 3.8G, 7.6G, 11.3G
    multiply-adds for ResNet-50/101/152). ``stride_on="3x3"`` puts it on the 3x3 instead ("ResNet
    v1.5", torchvision's choice): ~4.1G for ResNet-50, slightly more accurate. The parameters
    have the same names and shapes either way, so weights trained one way load into the other
    without complaint and give wrong outputs: torchvision's weights need ``stride_on="3x3"``.
    """

    expansion = 4

    def __init__(self, in_channels, channels, stride=1, plain=False, shortcut="B", stride_on="1x1"):
        super().__init__()
        if stride_on not in STRIDE_ON:
            raise ValueError(f"stride_on must be '1x1' (the paper's bottleneck) or '3x3' (torchvision's), got {stride_on!r}")
        out_channels = channels * self.expansion
        self.stride_on = stride_on
        self.conv1 = nn.Conv2d(in_channels, channels, 1, stride if stride_on == "1x1" else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride if stride_on == "3x3" else 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = None if plain else make_shortcut(shortcut, in_channels, out_channels, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


def make_stage(block, in_channels, channels, blocks, stride, plain, shortcut, **options):
    """One stage of a network: ``blocks`` blocks of ``channels`` base channels, the first taking
    ``in_channels`` and subsampling by ``stride``, the others keeping the shape. Its output has
    ``channels * block.expansion`` channels. ``options`` go to every block (``stride_on``,
    ``zero_channels``)."""
    check_shortcut(shortcut, options.get("zero_channels", "end"))
    stage = [block(in_channels, channels, stride, plain, shortcut, **options)]
    stage += [block(channels * block.expansion, channels, 1, plain, shortcut, **options) for _ in range(blocks - 1)]
    return nn.Sequential(*stage)
