from tinyres.nn import functional as F
from tinyres.nn.init import constant
from tinyres.nn.module import Module


class BatchNorm2d(Module):
    """Batch norm over channels: gamma = 1, beta = 0, running mean 0 and variance 1 to start.

    ``comm``: a communicator (tinyres.distributed) to take the training statistics over the whole
    batch that its ranks share (synchronized batch norm); None, this process's images only.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, comm=None):
        super().__init__()
        self.num_features, self.eps, self.momentum, self.comm = num_features, eps, momentum, comm
        self.weight = constant((num_features,), 1.0)
        self.bias = constant((num_features,), 0.0)
        self.register_buffer("running_mean", self.weight.xp.zeros(num_features, dtype="float32"))
        self.register_buffer("running_var", self.weight.xp.ones(num_features, dtype="float32"))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps, self.comm)

    def extra_repr(self):
        synchronized = ", synchronized" if self.comm is not None else ""
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}{synchronized}"
