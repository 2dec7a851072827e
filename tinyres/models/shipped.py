"""Which trained networks ship with tinyres: one entry per file in ``tinyres/models/weights/``,
with the test error its run reached. ``cifar_resnet``'s docstring and error messages read it
from here; ``tinyres.models.pretrained`` loads and writes the files. (A table of its own, so
that importing the models does not import the code that writes weights files.)
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Shipped:
    file: str  # in tinyres/models/weights/
    sha256: str
    test_error: float  # on the 10,000 CIFAR-10 test images, at the run's last iteration
    iterations: int  # of 128 images
    run: str  # the run directory in the repository's results/


# depth -> the shipped ResNet of that depth (option A shortcuts, 10 classes). Filled in as the
# reproduction runs converge (see results/README.md); nothing here is a placeholder.
SHIPPED = {
    20: Shipped(file='cifar10-resnet20.npz', sha256='ca302bfe7fd3102ce1e2843e159d43f55ddc8a62aa2b9afe70e7b0c1bb513e17',
                test_error=0.122, iterations=64000, run='cpu-resnet20-64k'),
    56: Shipped(file='cifar10-resnet56.npz', sha256='26fbcde69b93fc13c8acfe53308e8a6671531bca1da49a9755b957c949961872',
                test_error=0.1509, iterations=16000, run='cpu-resnet56-16k'),
}


def describe():
    """One line per shipped network, for docstrings and error messages."""
    if not SHIPPED:
        return "none yet (the reproduction runs in results/ have not finished)"
    return "; ".join(f"ResNet-{depth}: {entry.test_error:.2%} test error after {entry.iterations} iterations "
                     f"({entry.run})" for depth, entry in sorted(SHIPPED.items()))
