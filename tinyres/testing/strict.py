"""The "strict" backend: NumPy that behaves like a GPU library, for testing without a GPU.

Code that is written against ``numpy`` instead of ``xp`` works on the CPU and breaks only when
someone runs it on CuPy. CuPy refuses three things that NumPy allows, and so does this backend:

1. turning a device array into a NumPy array behind your back (``np.asarray(a)``, or any NumPy
   function that is not dispatched to the array library): CuPy raises ``TypeError: Implicit
   conversion to a NumPy array is not allowed``;
2. mixing a device array with a host array in one operation (``a + np.ones(3)``);
3. NumPy functions that CuPy does not provide (``np.savetxt``, ``np.lib.stride_tricks.*`` from
   the ``numpy`` module itself, ufunc methods other than ``add/maximum/minimum.at``, and anything
   outside the list below).

A :class:`StrictArray` wraps an ``np.ndarray`` and forwards every allowed operation to it, so
results are exactly NumPy's. ``xp`` for this backend is :data:`strict_numpy`, which mirrors the
NumPy functions CuPy also has. Run the suite on it with ``pytest --backend strict``.
"""

import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from tinyres.backend import Backend, register_backend

# NumPy functions that CuPy provides too (checked against CuPy's API reference). Anything else
# is refused, as CuPy would refuse it.
CUPY_FUNCTIONS = frozenset(
    """
    abs absolute add all allclose amax amin any arange argmax argmin argsort around array
    array_equal asarray ascontiguousarray astype broadcast_arrays broadcast_to can_cast ceil clip
    concatenate copy copyto count_nonzero cumsum diag divide dot einsum empty empty_like equal
    exp expand_dims eye flip floor full full_like greater greater_equal isclose isfinite isinf
    isnan less less_equal linspace log log1p logaddexp logical_and logical_not logical_or
    matmul max maximum mean min minimum moveaxis multiply ndim negative not_equal ones ones_like
    pad power prod ravel reciprocal repeat reshape result_type round rsqrt shape shares_memory sign
    sqrt square squeeze stack std subtract sum swapaxes take take_along_axis tanh tensordot tile
    transpose true_divide var where zeros zeros_like
    """.split()
)

# ufunc methods besides calling: CuPy 12 added add.at, maximum.at and minimum.at (the unbuffered
# scatter operations); the other methods (reduce, accumulate, reduceat, outer) are not checked.
_ALLOWED_UFUNC_METHODS = {("add", "at"), ("maximum", "at"), ("minimum", "at")}


def _host_array_error(value):
    return TypeError(
        f"strict backend: a host NumPy array of shape {value.shape} was mixed with device arrays. "
        "CuPy refuses this too: move it first with backend.asarray(...) or Tensor.to(...)."
    )


def unwrap(value, host_allowed=lambda array: False):
    """StrictArray -> np.ndarray, recursively through lists, tuples and dicts. Host arrays are
    refused unless ``host_allowed(array)`` says CuPy takes them there."""
    if isinstance(value, StrictArray):
        return value._array
    if isinstance(value, np.ndarray) and value.ndim > 0 and not host_allowed(value):
        raise _host_array_error(value)
    if isinstance(value, (list, tuple)):
        return type(value)(unwrap(v, host_allowed) for v in value)
    if isinstance(value, dict):
        return {k: unwrap(v, host_allowed) for k, v in value.items()}
    return value


def _index(key):
    """An index: host integer or boolean arrays are allowed in it (CuPy copies them over)."""
    return unwrap(key, host_allowed=lambda array: array.dtype.kind in "iub")


def wrap(value):
    """np.ndarray and NumPy scalars -> StrictArray (CuPy returns 0-d arrays, not scalars)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return StrictArray(np.asarray(value))
    if isinstance(value, (list, tuple)):
        return type(value)(wrap(v) for v in value)
    return value


def _not_listed(function):
    return (f"strict backend: {function} is not in tinyres's list of functions checked to exist in "
            "CuPy (CUPY_FUNCTIONS in tinyres/testing/strict.py); if CuPy has it, add it there")


class StrictArray(NDArrayOperatorsMixin):
    """An ``np.ndarray`` that acts like a ``cupy.ndarray`` (see the module docstring)."""

    __slots__ = ("_array",)

    def __init__(self, array):
        assert isinstance(array, np.ndarray)
        self._array = array

    # 1. no implicit conversion to NumPy
    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "strict backend: implicit conversion to a NumPy array is not allowed (CuPy refuses "
            "it too). Use xp functions on device arrays, or copy to the host explicitly with "
            "Tensor.numpy() / backend.to_numpy(...)."
        )

    # 2. NumPy ufuncs (and operators, through NDArrayOperatorsMixin) on device arrays only
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" and (ufunc.__name__, method) not in _ALLOWED_UFUNC_METHODS:
            raise TypeError(
                f"strict backend: {ufunc.__name__}.{method} is not among the ufunc methods checked to "
                "exist in CuPy (add.at, maximum.at, minimum.at); write it with functions of the list."
            )
        out = kwargs.get("out")
        if method == "at":  # ufunc.at(a, indices, b): the indices may be host arrays
            a, indices, *rest = inputs
            result = ufunc.at(unwrap(a), _index(indices), *unwrap(rest), **unwrap(kwargs))
        else:
            result = getattr(ufunc, method)(*unwrap(inputs), **unwrap(kwargs))
        if out is not None:
            return out[0] if len(out) == 1 else out
        return wrap(result)

    # 3. NumPy functions, only those CuPy has
    def __array_function__(self, func, types, args, kwargs):
        if func.__name__ not in CUPY_FUNCTIONS:
            raise TypeError(_not_listed(f"numpy.{func.__name__}"))
        return wrap(func(*unwrap(args), **unwrap(kwargs)))

    # attributes and methods forward to the wrapped array
    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)
    strides = property(lambda self: self._array.strides)
    itemsize = property(lambda self: self._array.itemsize)
    nbytes = property(lambda self: self._array.nbytes)
    flags = property(lambda self: self._array.flags)
    T = property(lambda self: StrictArray(self._array.T))

    def __getattr__(self, name):
        if name.startswith("_"):  # no __array_interface__ & co: NumPy would read through them
            raise AttributeError(name)
        attribute = getattr(self._array, name)
        if not callable(attribute):
            return wrap(attribute)

        def method(*args, **kwargs):
            return wrap(attribute(*unwrap(args), **unwrap(kwargs)))

        return method

    def __getitem__(self, key):
        return wrap(self._array[_index(key)])

    def __setitem__(self, key, value):
        self._array[_index(key)] = unwrap(value)

    def __len__(self):
        return len(self._array)

    def __iter__(self):
        return (wrap(row) for row in self._array)

    def __bool__(self):
        return bool(self._array)

    def __float__(self):
        return float(self._array)

    def __int__(self):
        return int(self._array)

    def __index__(self):
        return self._array.__index__()

    def __repr__(self):
        return "strict_" + repr(self._array)

    def __format__(self, spec):
        return self._array.__format__(spec)

    def __copy__(self):
        return StrictArray(self._array.copy())

    def __deepcopy__(self, memo):
        return StrictArray(self._array.copy())

    def __reduce__(self):  # pickling works (CuPy's arrays pickle too), and unpickles on the device
        return (StrictArray, (self._array.copy(),))


class _StrictStrideTricks:
    """``xp.lib.stride_tricks`` (CuPy has these two)."""

    @staticmethod
    def as_strided(x, shape=None, strides=None):
        return wrap(np.lib.stride_tricks.as_strided(unwrap(x), shape, strides))

    @staticmethod
    def sliding_window_view(x, window_shape, axis=None):
        return wrap(np.lib.stride_tricks.sliding_window_view(unwrap(x), window_shape, axis))


class _StrictLib:
    stride_tricks = _StrictStrideTricks


class _StrictNumpy:
    """The ``xp`` of the strict backend: NumPy's functions that CuPy also has, on StrictArrays."""

    lib = _StrictLib
    ndarray = StrictArray

    def asarray(self, data, dtype=None):
        """Host data -> device array (the one explicit way in)."""
        if isinstance(data, StrictArray):
            return data if dtype is None else data.astype(dtype, copy=False)
        # (a list may mix host data and device arrays, as CuPy allows)
        return StrictArray(np.array(unwrap(data, host_allowed=lambda array: True), dtype=dtype))

    array = asarray

    def __getattr__(self, name):
        attribute = getattr(np, name)
        if isinstance(attribute, types.ModuleType):  # np.random & co would hand out host arrays
            raise AttributeError(
                f"strict backend: xp.{name} is not emulated (CuPy has cupy.{name}, but the strict "
                "backend only wraps the functions in CUPY_FUNCTIONS); for random numbers use "
                "backend.rng, which draws the same numbers on every backend"
            )
        if isinstance(attribute, type) or not callable(attribute):
            return attribute  # dtypes (xp.float32), constants (xp.inf, xp.newaxis)
        if name not in CUPY_FUNCTIONS:
            raise AttributeError(_not_listed(f"xp.{name}"))

        def function(*args, **kwargs):
            return wrap(attribute(*unwrap(args), **unwrap(kwargs)))

        function.__name__ = name
        return function


strict_numpy = _StrictNumpy()


class StrictBackend(Backend):
    array_type = StrictArray

    def __init__(self):
        super().__init__("strict", strict_numpy)

    def asarray(self, data, dtype=None):
        return strict_numpy.asarray(data, dtype=dtype)

    def to_numpy(self, array):
        return array._array.copy() if isinstance(array, StrictArray) else np.asarray(array)


register_backend("strict", StrictBackend, StrictArray)
