from tinyres.nn import functional as F
from tinyres.nn.init import constant, kaiming_normal
from tinyres.nn.module import Module


class Linear(Module):
    """Fully connected layer; weight (out, in) He-initialised, bias zero."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = kaiming_normal((out_features, in_features), fan_in=in_features)
        self.bias = constant((out_features,), 0.0) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"
