"""``summary``: a network layer by layer, with its output shapes, parameters and multiply-adds.

The paper measures a network's cost in "FLOPs", by which it means multiply-adds (Table 1:
ResNet-50 has 3.8 x 10^9). Nearly all of them are in the convolutions and the fully connected
layer, so those are what is counted, as in the paper:

    convolution:      N * out_h * out_w * out_channels * (in_channels * kh * kw)
    fully connected:  N * in_features * out_features

(one multiply-add per weight per output position). Batch norm, ReLU, pooling and the residual
additions cost a few operations per activation, orders of magnitude fewer; they count as 0.

Shapes come from running the network once on zeros while ``observing`` (tinyres/nn/module.py)
notes the output of each leaf module (one with no sub-modules: Conv2d, BatchNorm2d, Linear,
MaxPool2d, shortcuts, ...). Ops called as functions inside a block (``F.relu``, ``out + shortcut``)
are not modules, so they get no row.
"""

from dataclasses import dataclass

import numpy as np

import tinyres
from tinyres.backend import get_backend
from tinyres.nn.conv import Conv2d
from tinyres.nn.linear import Linear
from tinyres.nn.module import observing
from tinyres.tensor import Tensor


@dataclass
class LayerRow:
    """One leaf module: dotted name, type, output shape (None if it did not run), parameters,
    multiply-adds."""

    name: str
    type: str
    output_shape: tuple | None
    params: int
    macs: int


@dataclass
class Summary:
    """What :func:`summary` found: one :class:`LayerRow` per leaf module, in definition order,
    and the totals for the whole model."""

    rows: list
    total_params: int
    total_macs: int


def multiply_adds(module, output_shape):
    """Multiply-adds of one call of ``module`` that produced an output of ``output_shape``."""
    if isinstance(module, Conv2d):  # output (N, out_channels, out_h, out_w)
        kh, kw = module.kernel_size
        return int(np.prod(output_shape)) * module.in_channels * kh * kw
    if isinstance(module, Linear):  # output (..., out_features)
        return int(np.prod(output_shape)) * module.in_features
    return 0


def summary(model, input_shape, print_fn=print):
    """Run ``model`` once on zeros of ``input_shape`` (e.g. ``(1, 3, 224, 224)``) and print a
    table of its leaf layers, then the total parameters and multiply-adds.

    Multiply-adds are for the whole input, batch included. The model runs in eval mode without
    recording a graph; its training mode is restored afterwards. ``print_fn`` receives the table
    one line at a time. Returns a :class:`Summary`.
    """
    parameters = model.parameters()
    backend = parameters[0].backend if parameters else get_backend("numpy")
    dtype = parameters[0].dtype if parameters else np.float32
    x = Tensor(backend.xp.zeros(tuple(input_shape), dtype=dtype))

    leaves = {}  # id -> (first dotted name, module): a module used in two places is one layer
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            leaves.setdefault(id(module), (name, module))
    leaves = list(leaves.values())
    seen = {}  # id(module) -> [output shape of the last call, multiply-adds over all calls]

    def note(module, out):
        shape = tuple(out.shape) if isinstance(out, Tensor) else None
        record = seen.setdefault(id(module), [None, 0])
        record[0] = shape
        record[1] += multiply_adds(module, shape) if shape is not None else 0

    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with observing([module for _, module in leaves], note), tinyres.no_grad():
            model(x)
    finally:
        for module, training in modes:
            module.training = training

    rows = []
    for name, module in leaves:
        shape, macs = seen.get(id(module), (None, 0))
        rows.append(LayerRow(name or "(model)", type(module).__name__, shape, module.num_parameters(), macs))
    result = Summary(rows, model.num_parameters(), sum(row.macs for row in rows))
    for line in format_table(result, input_shape):
        print_fn(line)
    return result


def format_table(result, input_shape):
    """The lines that :func:`summary` prints."""
    header = ("Layer", "Type", "Output shape", "Params", "Mult-adds")
    cells = [
        (row.name, row.type, "-" if row.output_shape is None else str(row.output_shape),
         f"{row.params:,}", f"{row.macs:,}")
        for row in result.rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]

    def line(c):
        return "  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1]), c[2].ljust(widths[2]),
                          c[3].rjust(widths[3]), c[4].rjust(widths[4])])

    rule = "-" * len(line(header))
    yield f"Input shape {tuple(input_shape)}"
    yield line(header)
    yield rule
    yield from (line(c) for c in cells)
    yield rule
    yield f"Total parameters:    {result.total_params:,} ({result.total_params / 1e6:.1f}M)"
    yield f"Total multiply-adds: {result.total_macs:,} ({result.total_macs / 1e9:.2f}G)"
