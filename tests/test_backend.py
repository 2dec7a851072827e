"""Backends: selection, clear errors when CuPy cannot run, explicit transfers, seeded RNG, and
the strict backend that refuses what CuPy refuses."""

import io
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import tinyres
import tinyres.nn.functional as F
from tinyres import backend as backends
from tinyres.testing.strict import StrictArray

REPO = Path(__file__).resolve().parent.parent  # run subprocesses on this checkout's tinyres


@pytest.fixture
def forget_cupy(monkeypatch):
    """Make get_backend('cupy') load afresh, and restore the registry afterwards."""
    monkeypatch.setitem(backends._backends, "cupy", None)
    del backends._backends["cupy"]


def test_cupy_missing_raises_an_error_that_says_how_to_install_it(monkeypatch, forget_cupy):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(tinyres.BackendUnavailable, match=r"pip install 'tinyres\[cuda\]'"):
        tinyres.get_backend("cupy")


def test_cupy_without_a_gpu_raises_an_error_that_says_so(monkeypatch, forget_cupy):
    class NoDevice(Exception):
        pass

    def no_gpu():
        raise NoDevice("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_gpu))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(tinyres.BackendUnavailable, match="cannot reach a GPU.*nvidia-smi"):
        tinyres.get_backend("cupy")


def test_unknown_backend_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown backend 'jax'.*cupy.*numpy"):
        tinyres.get_backend("jax")


def test_tensor_keeps_its_array_on_its_backend_and_moves_only_when_asked(backend):
    t = tinyres.Tensor(np.arange(6.0).reshape(2, 3), backend=backend)
    assert t.backend is backend and t.dtype == np.float32
    host = t.numpy()
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, np.arange(6.0).reshape(2, 3))
    back = t.to("numpy")
    assert back.backend.name == "numpy"
    assert back.to(backend).backend is backend


def test_strict_arrays_refuse_implicit_conversion_to_numpy():
    a = tinyres.get_backend("strict").asarray(np.ones(3))
    with pytest.raises(TypeError, match="implicit conversion"):
        np.asarray(a)


def test_strict_arrays_refuse_to_mix_with_host_arrays():
    a = tinyres.get_backend("strict").asarray(np.ones(3))
    with pytest.raises(TypeError, match="host NumPy array"):
        a + np.ones(3)
    a + 1.0  # Python scalars are fine, as on CuPy


def test_strict_backend_refuses_numpy_only_functions():
    strict = tinyres.get_backend("strict")
    a = strict.asarray(np.zeros(4))
    with pytest.raises(TypeError, match="numpy.savetxt is not in tinyres's list of functions checked to exist in CuPy"):
        np.savetxt(io.StringIO(), a)
    with pytest.raises(AttributeError, match="xp.savetxt is not in tinyres's list"):
        strict.xp.savetxt
    with pytest.raises(TypeError, match="multiply.accumulate is not among the ufunc methods"):
        np.multiply.accumulate(a)
    with pytest.raises(AttributeError, match="xp.random is not emulated.*backend.rng"):
        strict.xp.random


def test_strict_backend_allows_what_cupy_allows():
    """CuPy 12+ has add.at, takes host index arrays, builds arrays from lists of device arrays,
    copies, pickles and formats its arrays: the strict backend must not refuse those."""
    import copy
    import pickle

    strict = tinyres.get_backend("strict")
    a = strict.asarray(np.zeros(4))
    np.add.at(a, np.array([0, 0, 3]), 1.0)
    assert strict.to_numpy(a).tolist() == [2.0, 0.0, 0.0, 1.0]
    assert strict.to_numpy(a[np.array([0, 3])]).tolist() == [2.0, 1.0]
    assert strict.to_numpy(strict.xp.asarray([a[0], a[3]])).tolist() == [2.0, 1.0]
    for twin in (copy.copy(a), copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        assert isinstance(twin, StrictArray) and strict.to_numpy(twin).tolist() == strict.to_numpy(a).tolist()
    assert f"{a.sum():.1f}" == "3.0"


def test_backend_of_knows_strict_arrays_made_before_the_backend_is_asked_for(monkeypatch):
    from tinyres.testing.strict import strict_numpy

    monkeypatch.delitem(tinyres.backend._backends, "strict", raising=False)
    assert tinyres.backend.backend_of(strict_numpy.zeros(3)).name == "strict"


def test_nested_parallel_map_runs_instead_of_deadlocking():
    numpy = tinyres.get_backend("numpy")
    inner = numpy.parallel_map(lambda i: sum(numpy.parallel_map(lambda j: i * j, range(4))), range(4))
    assert inner == [0, 6, 12, 18]


def test_strict_arrays_compute_exactly_what_numpy_computes():
    strict = tinyres.get_backend("strict")
    x = np.random.default_rng(0).standard_normal((3, 4))
    a = strict.asarray(x)
    result = strict.xp.exp(a) @ a.T + a.sum(axis=0, keepdims=True)[:, :3]
    assert isinstance(result, StrictArray)
    np.testing.assert_array_equal(strict.to_numpy(result), np.exp(x) @ x.T + x.sum(axis=0, keepdims=True)[:, :3])


def test_ops_refuse_inputs_from_two_backends():
    a = tinyres.Tensor(np.ones((2, 2)))
    b = tinyres.Tensor(np.ones((2, 2)), backend="strict")
    with pytest.raises(ValueError, match=r"add: inputs live on different backends \(numpy and strict\).*\.to\("):
        a + b
    with pytest.raises(ValueError, match="conv2d: inputs live on different backends"):
        F.conv2d(tinyres.Tensor(np.ones((1, 1, 3, 3))), tinyres.Tensor(np.ones((1, 1, 3, 3)), backend="strict"))


def test_same_seed_same_numbers_on_every_backend(backend):
    tinyres.manual_seed(123)
    first = backend.to_numpy(backend.rng.normal((5,)))
    tinyres.manual_seed(123)
    numpy_draw = tinyres.get_backend("numpy").rng.normal((5,))
    np.testing.assert_array_equal(first, numpy_draw)
    assert first.dtype == np.float32


def test_generator_state_restores_the_exact_stream(backend):
    tinyres.manual_seed(5)
    backend.rng.uniform((3,))
    state = backend.rng.state()
    expected = backend.to_numpy(backend.rng.uniform((4,)))
    backend.rng.uniform((10,))
    backend.rng.set_state(state)
    np.testing.assert_array_equal(backend.to_numpy(backend.rng.uniform((4,))), expected)


def test_module_to_moves_parameters_and_buffers(backend):
    model = tinyres.nn.Sequential(tinyres.nn.Conv2d(3, 4, 3, padding=1), tinyres.nn.BatchNorm2d(4))
    model.to(backend)
    assert all(p.backend is backend for p in model.parameters())
    assert all(backends.backend_of(b) is backend for _, b in model.named_buffers())
    x = tinyres.Tensor(np.ones((2, 3, 5, 5)), backend=backend)
    assert model(x).backend is backend


def in_a_fresh_python(code):
    """What ``code`` prints, run by a new interpreter on this checkout (nothing imported yet)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout.split()


def test_import_tinyres_does_not_import_the_test_toolkit():
    assert in_a_fresh_python("import sys, tinyres; print([m for m in sys.modules if m.startswith('tinyres.testing')])") == ["[]"]


def test_import_tinyres_makes_tinyres_optim_available():
    assert in_a_fresh_python("import tinyres; print(tinyres.optim.SGD.__name__)") == ["SGD"]


def test_strict_backend_and_gradcheck_are_found_without_importing_the_test_toolkit_first():
    code = "import tinyres; print(tinyres.get_backend('strict').name, tinyres.gradcheck.__module__)"
    assert in_a_fresh_python(code) == ["strict", "tinyres.testing.gradcheck"]


def test_a_registered_backend_is_returned_by_get_backend_and_known_by_backend_of(monkeypatch):
    class Twin(backends.Backend):  # NumPy again, under another name and array type
        array_type = type("TwinArray", (), {})

    monkeypatch.setattr(backends, "_factories", dict(backends._factories))
    monkeypatch.setattr(backends, "_array_types", dict(backends._array_types))
    monkeypatch.setattr(backends, "_backends", dict(backends._backends))
    backends.register_backend("twin", lambda: Twin("twin", np), Twin.array_type)
    assert tinyres.get_backend("twin").name == "twin"
    assert backends.backend_of(Twin.array_type()) is tinyres.get_backend("twin")
