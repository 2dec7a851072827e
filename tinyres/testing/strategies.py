"""Hypothesis strategies for property-testing ops: shapes, arrays and layer geometries.

    from hypothesis import given
    from tinyres.testing import strategies as tst

    @given(tst.arrays(tst.shapes(max_dims=3)))
    def test_my_op_gradient(x):
        tinyres.gradcheck(my_op, [tinyres.Tensor(x, requires_grad=True, dtype="float64")])

Arrays are float64 (what gradient checks need). ``arrays(..., spaced=True)`` draws distinct
values on a grid that never contains 0, for ops with kinks (relu, max, max pooling), where a
central difference straddling a kink or a tie would measure nonsense.
"""

from collections import namedtuple

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

ConvGeometry = namedtuple(
    "ConvGeometry", "batch in_channels out_channels height width kernel_size stride padding"
)
PoolGeometry = namedtuple("PoolGeometry", "batch channels height width kernel_size stride padding")


def shapes(min_dims=1, max_dims=4, min_side=1, max_side=5):
    """Array shapes with ``min_dims`` to ``max_dims`` axes of ``min_side`` to ``max_side``."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def arrays(shape, low=-2.0, high=2.0, spaced=False):
    """float64 arrays of ``shape`` (a tuple or a strategy of tuples) with values in [low, high].

    With ``spaced=True`` the values are distinct odd multiples of step/2, so never 0 and no two
    closer than ``step``, where step is 1/8, or smaller when the array has more elements than
    [low, high] holds at that spacing (step = (high - low) / (size + 1)); any shape works.
    """
    if spaced:
        shapes = shape if isinstance(shape, st.SearchStrategy) else st.just(tuple(shape))
        return shapes.flatmap(lambda s: _spaced(s, low, high))
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, allow_infinity=False))


def _spaced(shape, low, high):
    size = int(np.prod(shape))
    step = min(1 / 8, (high - low) / (size + 1))
    grid = [(k + 0.5) * step for k in range(int(np.ceil(low / step - 0.5)), int(np.floor(high / step - 0.5)) + 1)]
    values = st.lists(st.sampled_from(grid), min_size=size, max_size=size, unique=True)
    return values.map(lambda v: np.array(v, dtype=np.float64).reshape(shape))


def _window(draw, max_batch, max_size, max_kernel, max_stride, max_padding):
    """What conv and pooling geometries share: a batch size, and a kernel, stride, padding
    (``max_padding`` is a number or a function of the kernel side) and input size on which the
    padded kernel fits, per axis."""
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    limit = max_padding if callable(max_padding) else (lambda k: max_padding)
    padding = tuple(draw(st.integers(0, limit(k))) for k in kernel)
    height, width = (draw(st.integers(max(1, k - 2 * p), max_size)) for k, p in zip(kernel, padding))
    stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    return dict(batch=draw(st.integers(1, max_batch)), height=height, width=width, kernel_size=kernel,
                stride=stride, padding=padding)


@st.composite
def conv_geometries(draw, max_batch=2, max_channels=3, max_size=7, max_kernel=4, max_stride=3, max_padding=2):
    """Valid conv2d geometries: any kernel (square or not), stride and padding that fit."""
    window = _window(draw, max_batch, max_size, max_kernel, max_stride, max_padding)
    return ConvGeometry(in_channels=draw(st.integers(1, max_channels)), out_channels=draw(st.integers(1, max_channels)), **window)


@st.composite
def pool_geometries(draw, max_batch=2, max_channels=2, max_size=6, max_kernel=3, max_stride=3):
    """Valid pooling geometries (padding at most half the window, as PyTorch requires)."""
    window = _window(draw, max_batch, max_size, max_kernel, max_stride, lambda k: k // 2)
    geometry = PoolGeometry(channels=draw(st.integers(1, max_channels)), **window)
    assume(geometry.batch * geometry.channels * geometry.height * geometry.width <= 64)
    return geometry
