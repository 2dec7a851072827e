"""tinyres: residual networks from scratch in NumPy, and on the GPU through CuPy.

    import tinyres
    from tinyres import nn
    x = tinyres.Tensor(images)          # (N, C, H, W), float32
    loss = nn.functional.cross_entropy(model(x), labels)
    loss.backward()

    tinyres.save(model.state_dict(), "weights.npz")        # weights, as .npz (no pickle)
    tinyres.save_safetensors(model, "model.safetensors")   # in PyTorch's names, for PyTorch
"""

import importlib
import os


def _let_idle_openblas_threads_sleep():
    """Speed only. OpenBLAS's idle threads busy-wait for ~0.1 s after every matrix product,
    competing for the cores with the NumPy copies that follow (im2col runs on all cores):
    measured here, that made those copies ~2x slower. This asks them to sleep at once. It only
    takes effect if set before NumPy loads OpenBLAS, so import tinyres before numpy (or export
    the variable yourself)."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


_let_idle_openblas_threads_sleep()

# Under mpiexec, the processes on one machine share its cores: one BLAS thread each on 2 cores
# with 2 processes (threads.py; also before NumPy loads).
from tinyres.threads import share_cores  # noqa: E402

share_cores()

from tinyres.autograd import enable_grad, is_grad_enabled, no_grad  # noqa: E402
from tinyres.backend import BackendUnavailable, get_backend, manual_seed  # noqa: E402
from tinyres.tensor import Tensor  # noqa: E402
from tinyres import nn, optim  # noqa: E402,I001
from tinyres.checkpoint import load_weights as load, save_weights as save  # noqa: E402
from tinyres.interchange import load_safetensors, save_safetensors  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable", "GradcheckError", "Tensor", "enable_grad", "get_backend", "gradcheck",
    "is_grad_enabled", "load", "load_safetensors", "manual_seed", "nn", "no_grad", "optim", "save",
    "save_safetensors",
]


def __getattr__(name):
    """``tinyres.gradcheck`` and ``tinyres.GradcheckError`` come from the test toolkit
    (``tinyres/testing/``), which is imported when one of them is first asked for, not by
    ``import tinyres``: the library does not depend on its tests' tools."""
    if name in ("gradcheck", "GradcheckError"):
        return getattr(importlib.import_module("tinyres.testing.gradcheck"), name)
    raise AttributeError(f"module 'tinyres' has no attribute {name!r}")
