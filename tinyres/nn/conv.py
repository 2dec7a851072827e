from tinyres.nn import functional as F
from tinyres.nn.functional.common import pair
from tinyres.nn.init import constant, kaiming_normal
from tinyres.nn.module import Module


class Conv2d(Module):
    """2-D convolution layer; weights (out, in, kh, kw) He-initialised, bias zero.

    ResNets use ``bias=False`` before batch norm, whose beta makes a bias redundant.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        kh, kw = pair(kernel_size, "kernel_size", "Conv2d")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (kh, kw), stride, padding
        self.weight = kaiming_normal((out_channels, in_channels, kh, kw), fan_in=in_channels * kh * kw)
        self.bias = constant((out_channels,), 0.0) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")
