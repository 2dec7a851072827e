"""Layers (``tinyres.nn``) and, in ``tinyres.nn.functional``, the ops they are made of."""

from tinyres.nn import functional
from tinyres.nn.activation import ReLU
from tinyres.nn.batch_norm import BatchNorm2d
from tinyres.nn.container import Flatten, Sequential
from tinyres.nn.conv import Conv2d
from tinyres.nn.dropout import Dropout
from tinyres.nn.linear import Linear
from tinyres.nn.module import Module
from tinyres.nn.pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d

__all__ = [
    "AvgPool2d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "GlobalAvgPool2d", "Linear",
    "MaxPool2d", "Module", "ReLU", "Sequential", "functional",
]
