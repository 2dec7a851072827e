"""The networks of "Deep Residual Learning for Image Recognition" (He et al., 2015)."""

from tinyres.models.cifar import cifar_resnet
from tinyres.models.imagenet import imagenet_resnet
from tinyres.models.summary import summary

__all__ = ["cifar_resnet", "imagenet_resnet", "summary"]
