"""tinyres: residual networks from scratch in NumPy, and on the GPU through CuPy.

    import tinyres
    from tinyres import nn
    x = tinyres.Tensor(images)          # (N, C, H, W), float32
    loss = nn.functional.cross_entropy(model(x), labels)
    loss.backward()
"""

from tinyres.autograd import enable_grad, is_grad_enabled, no_grad
from tinyres.backend import BackendUnavailable, get_backend, manual_seed
from tinyres.tensor import Tensor
from tinyres import nn  # noqa: E402,I001
from tinyres.testing.gradcheck import GradcheckError, gradcheck

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable", "GradcheckError", "Tensor", "enable_grad", "get_backend", "gradcheck",
    "is_grad_enabled", "manual_seed", "nn", "no_grad",
]
