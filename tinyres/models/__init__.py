"""The networks of "Deep Residual Learning for Image Recognition" (He et al., 2015)."""

from tinyres.models.cifar import cifar_resnet

__all__ = ["cifar_resnet"]
