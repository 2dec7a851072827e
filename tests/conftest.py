"""Test configuration: which backends the suite runs on, and hypothesis profiles.

By default every test that takes a ``backend`` argument runs twice: on NumPy and on the strict
backend (NumPy that refuses what CuPy refuses), so code that would break on a GPU fails here
too. On a GPU machine run the whole suite on CuPy instead:

    pytest --backend cupy            (or TINYRES_TEST_BACKEND=cupy pytest)
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tinyres.backend import get_backend

settings.register_profile(
    "default", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        default=os.environ.get("TINYRES_TEST_BACKEND", "numpy,strict"),
        help="comma-separated backends to run backend tests on: numpy, strict, cupy "
        "(default numpy,strict; env TINYRES_TEST_BACKEND)",
    )


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        names = [n.strip() for n in metafunc.config.getoption("--backend").split(",") if n.strip()]
        metafunc.parametrize("backend", [get_backend(n) for n in names], ids=names)


@pytest.fixture
def cifar_dir(tmp_path):
    """A small CIFAR-10 in the official binary layout: 5 training files and a test file of
    24 images each (all ten classes), written by the test itself."""
    from tinyres.data import cifar10

    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        images = rng.integers(0, 256, (24, 3, 32, 32), dtype=np.uint8)
        labels = np.arange(24) % 10
        cifar10.write_batch(str(folder / name), images, labels)
    (folder / "batches.meta.txt").write_text("\n".join(cifar10.CLASSES) + "\n")
    return tmp_path
