"""Worked solution to chapter 9, exercise 4: the pre-activation block of He, Zhang, Ren and Sun
(2016, "Identity Mappings in Deep Residual Networks"), with the option-A shortcut."""

import tinyres.nn.functional as F
from tinyres import nn
from tinyres.models.blocks import make_shortcut


class PreActBlock(nn.Module):
    """x + F(x), F = BN, ReLU, 3x3 conv (strided), BN, ReLU, 3x3 conv; nothing after the addition."""

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=1, bias=False)
        self.shortcut = make_shortcut("A", in_channels, channels, stride)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)
