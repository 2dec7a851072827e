"""For the check cells of the chapters' build exercises: while the reader's code runs, the
library's own version of what they were asked to build cannot be called.

    with unavailable(F.conv2d, F.col2im):
        out = my_conv(x, w)          # a call of conv2d or col2im in here raises OffLimits

Renaming a function or importing it another way does not get around it: what is swapped is the
code of the function object itself (its ``__code__``), for the duration of the block, and it is
put back on leaving, also when the block raises.
"""

import inspect
from contextlib import contextmanager


class OffLimits(AssertionError):
    """A function the exercise asks you to write yourself was called from your code."""


def _refuse(*args, **kwargs):
    # This code runs as the code of the refused function, so its global names are looked up in
    # *that* function's module: reach OffLimits through __import__, a builtin found everywhere.
    raise __import__("tinyres.testing.exercises", fromlist=["OffLimits"]).OffLimits(
        "this exercise's check forbids calling tinyres's own version of what you are asked to build: "
        "write it from the pieces the exercise names")


@contextmanager
def unavailable(*targets):
    """Inside the ``with`` block, calling any of ``targets`` raises :class:`OffLimits`.

    A target is a Python function or method, a class (constructing it is refused: its own
    ``__init__`` is swapped), or a context manager made by ``contextlib.contextmanager``.
    """
    functions = [_swappable(target) for target in targets]
    originals = [(function, function.__code__) for function in functions]
    try:
        for function, _ in originals:
            function.__code__ = _refuse.__code__
        yield
    finally:
        for function, code in originals:
            function.__code__ = code


def _swappable(target):
    """The plain function whose code stands for ``target``."""
    if inspect.isclass(target):
        if "__init__" not in vars(target):
            raise TypeError(f"unavailable: {target.__name__} has no __init__ of its own to refuse")
        target = vars(target)["__init__"]
    target = inspect.unwrap(target)  # a contextmanager's (or other decorator's) own function
    if not inspect.isfunction(target):
        raise TypeError(f"unavailable: {target!r} is not a Python function, method or class")
    if target.__code__.co_freevars:
        raise TypeError(f"unavailable: {target.__qualname__} is a closure; give the function it wraps")
    return target
