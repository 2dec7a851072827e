"""Weights to and from PyTorch, in safetensors files.

A pickled ``.pth`` file runs whatever code it contains when it is loaded. A ``.safetensors``
file is a JSON header (names, dtypes, shapes) followed by raw arrays, and its NumPy API needs no
PyTorch. So a torchvision model's weights come over with one line where PyTorch is installed,

    safetensors.torch.save_file(torchvision.models.resnet50(weights="DEFAULT").state_dict(), "resnet50.safetensors")

and load here with ``imagenet_resnet(50, stride_on="3x3", weights="resnet50.safetensors")``.
(``pip install safetensors``, or ``pip install 'tinyres[interchange]'``; tinyres needs no PyTorch.)

Names. tinyres names its modules after the paper (``stage1``, ``shortcut``, ``fc``), PyTorch's
models name theirs otherwise; the names map one to one, by these rules on every name of a
parameter or buffer (the model's own ``state_dict`` keeps tinyres's names, which run
checkpoints use):

    ImageNetResNet   stage<k>. -> layer<k>.    .shortcut. -> .downsample.   (torchvision)
    CifarResNet      stage<k>. -> layer<k>.    fc. -> linear.                (the widely used
                                                                               PyTorch port)
    anything else    unchanged (Sequential, Conv2d, BatchNorm2d, ... are named as in PyTorch)

PyTorch's batch norm also counts its batches in ``num_batches_tracked`` (read only with
``momentum=None``); tinyres does not count them, so files get 0 and loading skips the count.

Layout. Three choices change the function a network computes but no name or shape: whether
the blocks add their shortcuts at all (``plain``: option A's shortcuts have no weights, so a
ResNet and its plain twin have the same names), where a bottleneck subsamples (``stride_on``)
and where option A's zero channels go (``zero_channels``). A file written here records them in
its header, and loading it into a network built the other way is refused. A file written by PyTorch records nothing, so there the
choice is yours to make: torchvision's ResNet-50/101/152 need ``stride_on="3x3"``, the CIFAR port
``zero_channels="both"``.
"""

import os
import re

import numpy as np

from tinyres.models.blocks import Bottleneck, ZeroPadShortcut
from tinyres.models.cifar import CifarResNet
from tinyres.models.imagenet import ImageNetResNet
from tinyres.nn.batch_norm import BatchNorm2d
from tinyres.nn.module import StateDictError, load_arrays

RENAMES = {  # (regular expression, replacement) on tinyres names, applied in order
    ImageNetResNet: [(r"^stage(\d+)\.", r"layer\1."), (r"\.shortcut\.", ".downsample.")],
    CifarResNet: [(r"^stage(\d+)\.", r"layer\1."), (r"^fc\.", "linear.")],
}
COUNTER = "num_batches_tracked"


def pytorch_name(model, name):
    """The PyTorch name of ``model``'s parameter or buffer called ``name`` in tinyres."""
    for kind, rules in RENAMES.items():
        if isinstance(model, kind):
            for pattern, replacement in rules:
                name = re.sub(pattern, replacement, name)
    return name


def pytorch_names(model):
    """{tinyres name: PyTorch name} for every parameter and buffer, in ``state_dict`` order."""
    names = [name for name, _ in model.named_parameters()] + [name for name, _ in model.named_buffers()]
    return {name: pytorch_name(model, name) for name in names}


def _counters(model):
    """The PyTorch names of the batch counters of ``model``'s batch norm layers."""
    return [pytorch_name(model, f"{prefix}.{COUNTER}" if prefix else COUNTER)
            for prefix, module in model.named_modules() if isinstance(module, BatchNorm2d)]


def pytorch_state_dict(model):
    """``model.state_dict()`` in PyTorch's names, with batch norm's counters (0), as host arrays."""
    state = model.state_dict()
    converted = {pytorch_name(model, name): np.ascontiguousarray(value) for name, value in state.items()}
    converted.update({name: np.array(0, dtype=np.int64) for name in _counters(model)})
    return converted


def load_pytorch_state_dict(model, state, strict=True, source="the state"):
    """Load a state dict in PyTorch's names into ``model``, as ``Module.load_state_dict`` does:
    every name, shape and dtype checked first, nothing loaded on a mismatch, the error naming
    each wrong name as PyTorch writes it; dtypes converted to the model's. Batch norm's counters
    are accepted and skipped. Returns ``(missing_keys, unexpected_keys)`` in PyTorch's names."""
    names = pytorch_names(model)
    targets = dict(model.named_parameters())
    targets.update(model.named_buffers())
    targets = {names[name]: target for name, target in targets.items()}
    counters = set(_counters(model))
    state = {name: value for name, value in state.items() if name not in counters}
    return load_arrays(targets, state, strict, f"{source} does not fit {type(model).__name__} (names as in PyTorch)")


def layout(model):
    """What names and shapes do not show, as safetensors header entries (strings)."""
    found = {}
    for module in model.modules():
        if isinstance(module, (CifarResNet, ImageNetResNet)):
            found["tinyres.plain"] = str(module.plain)
        if isinstance(module, Bottleneck):
            found["tinyres.stride_on"] = module.stride_on
        if isinstance(module, ZeroPadShortcut):
            found["tinyres.zero_channels"] = module.zero_channels
    return found


def save_safetensors(model, path):
    """Write ``model``'s parameters and buffers to ``path`` in PyTorch's names (see the module
    docstring), readable by ``safetensors.torch.load_file`` and by :func:`load_safetensors`.
    Written to ``path.tmp`` and renamed: an interrupted save leaves no half file."""
    numpy_api = _safetensors()
    partial = f"{path}.tmp"
    numpy_api.save_file(pytorch_state_dict(model), partial, metadata={"format": "pt", **layout(model)})
    os.replace(partial, path)


def load_safetensors(model, path, strict=True):
    """Load a ``.safetensors`` file written by :func:`save_safetensors` or by PyTorch
    (``safetensors.torch.save_file(model.state_dict(), path)``) into ``model``, in place.

    Every name and shape is checked before anything is copied: a file with missing, unexpected
    or misshaped entries, or entries that are not floating point, is refused with a
    :class:`StateDictError` listing each one by its name in the file, and the model is left as
    it was (``strict=False`` allows missing and unexpected names). Floating dtypes are
    converted to the model's. Returns ``(missing_keys, unexpected_keys)``.
    """
    numpy_api = _safetensors()
    from safetensors import safe_open

    if os.path.isdir(path):
        raise IsADirectoryError(f"load_safetensors: {path} is a folder; give the .safetensors file in it")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_safetensors: {path} does not exist")
    try:
        with safe_open(path, framework="np") as f:
            header = f.metadata() or {}
        state = numpy_api.load_file(path)
    except Exception as error:  # safetensors raises its own error type, from Rust
        if str(path).endswith(".npz"):
            raise ValueError(f"load_safetensors: {path} is an .npz file, as tinyres.save writes them, not a safetensors "
                             "file: load it with model.load_state_dict(tinyres.load(path))") from None
        raise ValueError(
            f"load_safetensors: {path} is not a safetensors file tinyres can read ({error}). A PyTorch "
            ".pth file converts, where PyTorch is installed, with safetensors.torch.save_file("
            "torch.load(path, weights_only=True), 'model.safetensors')"
        ) from None
    for key, ours in layout(model).items():
        theirs = header.get(key)
        if theirs is not None and theirs != ours:
            if not _same_names_and_shapes(model, state):  # another network altogether: say that first
                return load_pytorch_state_dict(model, state, True, source=path)  # (raises, loading nothing)
            option = key.removeprefix("tinyres.")
            theirs, ours = (v if v in ("True", "False") else repr(v) for v in (theirs, ours))  # as Python spells them
            raise StateDictError(
                f"load_safetensors: {path} was saved from a network with {option}={theirs}, this one has "
                f"{option}={ours}: the same names and shapes, another function. Build the network with "
                f"{option}={theirs} (nothing was loaded)"
            )
    return load_pytorch_state_dict(model, state, strict, source=path)


def _same_names_and_shapes(model, state):
    """Whether ``state`` (PyTorch's names) has exactly ``model``'s arrays, by name and shape."""
    names = pytorch_names(model)
    ours = {names[name]: tuple(array.shape) for name, array in [*model.named_parameters(), *model.named_buffers()]}
    counters = set(_counters(model))
    return ours == {name: tuple(value.shape) for name, value in state.items() if name not in counters}


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError(
            "safetensors files need the safetensors package (no PyTorch): pip install safetensors, "
            "or pip install 'tinyres[interchange]'"
        ) from None
    return safetensors.numpy
