"""tinyres.testing.exercises.unavailable: what the chapters' check cells use to refuse the library's
own answer to an exercise."""

import numpy as np
import pytest

import tinyres
import tinyres.nn.functional as F
from tinyres.lr_scheduler import MultiStepLR
from tinyres.models.blocks import BasicBlock
from tinyres.nn.functional.conv import conv2d
from tinyres.nn.module import observing
from tinyres.optim import SGD
from tinyres.testing.exercises import OffLimits, unavailable


def test_a_refused_function_raises_however_it_is_reached_and_works_again_after():
    x = tinyres.Tensor(np.zeros((1, 1, 4, 4)))
    w = tinyres.Tensor(np.ones((1, 1, 3, 3)))
    alias = conv2d
    with unavailable(F.conv2d):
        for call in (lambda: F.conv2d(x, w), lambda: alias(x, w), lambda: tinyres.nn.Conv2d(1, 1, 3)(x)):
            with pytest.raises(OffLimits, match="write it from the pieces"):
                call()
    assert F.conv2d(x, w, padding=1).shape == (1, 1, 4, 4)  # restored


def test_methods_classes_and_context_managers_are_refused_and_restored_even_after_an_error():
    block = BasicBlock(4, 4, 1)
    sgd = SGD([tinyres.Tensor(np.zeros(1), requires_grad=True)], lr=0.1)
    with pytest.raises(RuntimeError, match="the reader's own error"):
        with unavailable(BasicBlock.forward, MultiStepLR, observing):
            with pytest.raises(OffLimits):
                block(tinyres.Tensor(np.zeros((1, 4, 2, 2), "float32")))
            with pytest.raises(OffLimits):
                MultiStepLR(sgd, [1])
            with pytest.raises(OffLimits):
                with observing([block], lambda m, out: None):
                    pass
            raise RuntimeError("the reader's own error")
    assert block(tinyres.Tensor(np.zeros((1, 4, 2, 2), "float32"))).shape == (1, 4, 2, 2)
    MultiStepLR(sgd, [1])
    with observing([block], lambda m, out: None):
        pass


def test_targets_it_cannot_refuse_are_named():
    with pytest.raises(TypeError, match="is not a Python function"):
        with unavailable(len):
            pass
    with pytest.raises(TypeError, match="has no __init__ of its own"):
        class Child(MultiStepLR):
            pass
        with unavailable(Child):
            pass
