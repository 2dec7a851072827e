"""Array backends: where a tensor's numbers live and which library computes on them.

tinyres computes with NumPy on the CPU or with CuPy on an NVIDIA GPU. Both libraries offer the
same functions (``xp.exp``, ``xp.matmul``, ...), so every op is written once against ``xp``, the
array module of its inputs, and runs on either. This file is the only place that knows which
array libraries exist; no op has an ``if cupy:`` branch. (tinyres/distributed.py also names CuPy,
for NCCL: a communication library of CuPy's, not an array operation.)

Other backends register themselves with :func:`register_backend`. The test toolkit does so for
``"strict"``, NumPy dressed up as a separate device that refuses everything CuPy refuses (see
``tinyres/testing/strict.py``): the test suite uses it to catch code that would break on a GPU
without needing one. The library never imports the test toolkit; ``get_backend("strict")``
imports the module that registers it, named in ``_REGISTERED_ON_IMPORT``.

Rules:
- A tensor lives on the backend of its array; moving it is always explicit
  (``Tensor.to("cupy")``, ``Tensor.numpy()``, ``Module.to("cupy")``).
- Random numbers come from one seeded generator per backend (``backend.rng``), reseeded by
  ``tinyres.manual_seed``.
"""

import importlib
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tinyres import threads

INITIAL_SEED = 0
_seed = INITIAL_SEED  # the last seed given to manual_seed: backends loaded later start from it


class BackendUnavailable(RuntimeError):
    """Raised when a backend is asked for but cannot run on this machine."""


class Generator:
    """The random numbers tinyres needs, with the same calls on every backend.

    Each backend owns one, seeded by :func:`manual_seed`. Numbers are drawn on the host by NumPy's
    PCG64 and copied to the backend. That costs one small transfer on a GPU (what a ResNet draws is
    its initial weights and, rarely, dropout masks), and buys two things: the same seed gives the
    same numbers on every backend, and ``state()`` / ``set_state()`` capture the stream exactly.
    (The trainer does not need them to resume bit for bit: a CIFAR ResNet draws only its initial
    weights, which the checkpoint replaces; a model that drew during training, such as one with
    dropout, would have to save the state with its checkpoint.)
    """

    def __init__(self, backend, seed):
        self.backend = backend
        self.seed(seed)

    def seed(self, seed):
        self._numpy = np.random.default_rng(seed)

    def uniform(self, shape, dtype=np.float32):
        """Uniform samples in [0, 1)."""
        return self.backend.asarray(self._numpy.random(shape, dtype=np.dtype(dtype)))

    def normal(self, shape, dtype=np.float32):
        """Standard normal samples."""
        return self.backend.asarray(self._numpy.standard_normal(shape, dtype=np.dtype(dtype)))

    def state(self):
        """The generator's position, a JSON-friendly dict."""
        return self._numpy.bit_generator.state

    def set_state(self, state):
        self._numpy.bit_generator.state = state


class Backend:
    """One array library: ``xp`` is its module, the rest are the few operations that differ.

    Attributes:
        name: ``"numpy"``, ``"cupy"`` or ``"strict"``.
        xp: the array module (``numpy``, ``cupy``, or the strict NumPy namespace).
        rng: this backend's seeded :class:`Generator`.
    """

    array_type = np.ndarray

    def __init__(self, name, xp):
        self.name = name
        self.xp = xp
        self.rng = Generator(self, _seed)

    def __repr__(self):
        return f"Backend({self.name!r})"

    def owns(self, array):
        """True if ``array`` is an array of this backend."""
        return type(array) is self.array_type

    def asarray(self, data, dtype=None):
        """Copy host data (NumPy array, list, scalar) onto this backend: an explicit transfer."""
        return np.asarray(data, dtype=dtype)

    def to_numpy(self, array):
        """Copy an array of this backend to the host as a NumPy array (always a copy, on
        every backend, so the result never changes behind your back)."""
        return np.array(array, copy=True)

    def synchronize(self):
        """Wait until queued work is finished (needed for honest timings on a GPU)."""

    def parallel_map(self, fn, items):
        """Run ``fn`` on every item, on all CPU cores.

        NumPy's elementwise work and copies run on one core (BLAS uses all of them), but they
        release the GIL, so threads working on disjoint slices of one array do run in parallel.
        Ops use this for their big copies (im2col). On CuPy each kernel is already parallel, so
        its backend runs the items one after another.
        """
        items = list(items)
        if len(items) == 1 or getattr(_in_worker, "active", False):
            # (inside a worker, a nested call runs in turn: waiting on the pool from one of its
            # own threads could deadlock)
            return [fn(item) for item in items]
        return list(_thread_pool().map(_as_worker(fn), items))

    @property
    def workers(self):
        """How many pieces parallel_map can usefully run at once."""
        return _cpu_count()


class CupyBackend(Backend):
    def __init__(self, cupy):
        self.array_type = cupy.ndarray
        super().__init__("cupy", cupy)

    def asarray(self, data, dtype=None):
        return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, array):
        return self.xp.asnumpy(array)

    def synchronize(self):
        self.xp.cuda.Stream.null.synchronize()

    def parallel_map(self, fn, items):
        return [fn(item) for item in items]

    workers = 1


_backends = {}
_pool = None


def _cpu_count():
    return min(8, threads.cores())  # this process's share of the cores (several under mpiexec)


_in_worker = threading.local()


def _as_worker(fn):
    def run(item):
        _in_worker.active = True
        try:
            return fn(item)
        finally:
            _in_worker.active = False

    return run


def _thread_pool():
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_cpu_count(), thread_name_prefix="tinyres")
    return _pool


def _load_cupy():
    try:
        import cupy
    except ImportError as error:
        raise BackendUnavailable(
            "backend 'cupy' needs CuPy, which is not installed. Install it with "
            "`pip install 'tinyres[cuda]'` on a machine with an NVIDIA GPU and CUDA 12, "
            "or use backend='numpy'."
        ) from error
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CuPy raises its own CUDARuntimeError types
        raise BackendUnavailable(
            f"backend 'cupy': CuPy is installed but cannot reach a GPU ({error}). Check that an "
            "NVIDIA GPU and its driver are present (`nvidia-smi`), or use backend='numpy'."
        ) from error
    if count == 0:
        raise BackendUnavailable(
            "backend 'cupy': CuPy found no CUDA GPU on this machine; use backend='numpy'."
        )
    return CupyBackend(cupy)


_factories = {"numpy": lambda: Backend("numpy", np), "cupy": _load_cupy}
_array_types = {}  # name -> array type, for backends registered with one
# Backends defined outside this package's core, and the module that registers each when imported
_REGISTERED_ON_IMPORT = {"strict": "tinyres.testing.strict"}


def register_backend(name, factory, array_type=None):
    """Make ``get_backend(name)`` return ``factory()`` (made once, on first use).

    ``array_type``, the type of the backend's arrays, lets :func:`backend_of` recognise them
    even before the backend has been asked for.
    """
    _factories[name] = factory
    if array_type is not None:
        _array_types[name] = array_type


def get_backend(name="numpy"):
    """Return the backend called ``name`` (``"numpy"``, ``"cupy"``, ``"strict"`` or a registered one).

    A :class:`Backend` passes through unchanged. Raises :class:`BackendUnavailable`, saying how
    to fix it, when the backend cannot run here (CuPy missing, no GPU).
    """
    if isinstance(name, Backend):
        return name
    if name not in _factories and name in _REGISTERED_ON_IMPORT:
        importlib.import_module(_REGISTERED_ON_IMPORT[name])  # registers it
    if name not in _factories:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(set(_factories) | set(_REGISTERED_ON_IMPORT))}")
    if name not in _backends:
        _backends[name] = _factories[name]()
    return _backends[name]


def backend_of(array):
    """The backend an array belongs to, found from its type (like Chainer's get_array_module)."""
    if isinstance(array, (np.ndarray, np.generic)):
        return get_backend("numpy")
    for backend in _backends.values():
        if backend.owns(array):
            return backend
    if "cupy" in sys.modules and isinstance(array, sys.modules["cupy"].ndarray):
        return get_backend("cupy")
    for name, array_type in _array_types.items():
        if isinstance(array, array_type):
            return get_backend(name)
    raise TypeError(f"expected a NumPy or CuPy array, got {type(array).__name__}")


def retain_freed_memory():
    """Ask glibc's allocator to keep freed memory for reuse instead of returning it to the OS.

    A training step allocates and frees the same few hundred MB every time. By default glibc
    serves large arrays with fresh mmap()s and trims freed memory back to the OS, so every step
    page-faults its whole working set in again (~12,000 faults per ResNet-20 step here; about
    10% of the step). With these settings the process keeps its peak memory and reuses it.
    Process-wide, so tinyres only calls it from its own programs (``python -m tinyres.train``,
    the benchmarks). Returns False where it does not apply (not Linux/glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        largest = (1 << 31) - 1  # mallopt takes a C int: trim only beyond 2 GiB of free memory, i.e. never here
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, largest))
    except (OSError, AttributeError):
        return False


def manual_seed(seed):
    """Seed the random generator of every backend (those loaded now and those loaded later)."""
    global _seed
    _seed = seed
    for backend in _backends.values():
        backend.rng.seed(seed)
