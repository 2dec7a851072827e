"""Stochastic gradient descent with momentum and weight decay, the paper's optimiser."""

import numpy as np

from tinyres.backend import backend_of


class SGD:
    """Stochastic gradient descent with momentum and weight decay, as PyTorch's ``SGD`` does it.

    For each parameter p with gradient g, learning rate lr, momentum mu and weight decay wd:

        d <- g + wd * p           (weight decay: the gradient of wd/2 * |p|^2 added to the loss's)
        v <- mu * v + d           (v, the velocity, starts as the first d)
        p <- p - lr * v

    With mu = 0 there is no velocity and the step is p <- p - lr * d. Updates are in place, on the
    parameter's own backend. The velocity follows its parameter: if the model was moved
    (``Module.to``) or converted (``Module.astype``) since the last step, the next step first
    moves or converts the velocity the same way, as PyTorch's optimisers follow their parameters.

    Args:
        parameters: the tensors to train (``model.parameters()``).
        lr, momentum, weight_decay: lr > 0, momentum >= 0, weight_decay >= 0.
    """

    def __init__(self, parameters, lr, momentum=0.0, weight_decay=0.0):
        self.parameters = list(parameters)
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: need lr > 0, momentum >= 0, weight_decay >= 0, got {lr}, {momentum}, {weight_decay}")
        # Python floats: a NumPy float64 here would turn float32 updates and momentum into float64
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.velocity = [None] * len(self.parameters)

    def step(self):
        for i, p in enumerate(self.parameters):
            if p.grad is None:
                continue
            step = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad.copy()
            if self.momentum:
                if self.velocity[i] is None:
                    self.velocity[i] = step
                else:
                    self.velocity[i] = _like_parameter(self.velocity[i], p)
                    self.velocity[i] *= self.momentum
                    self.velocity[i] += step
                step = self.velocity[i]
            p.data -= self.lr * step

    def zero_grad(self):
        for p in self.parameters:
            p.grad = None

    def state_dict(self):
        """Momentum buffers as host NumPy arrays of their parameter's dtype (zeros where none
        exists yet)."""
        return {
            f"velocity.{i}": (np.zeros(p.shape, p.dtype) if v is None else backend_of(v).to_numpy(v).astype(p.dtype, copy=False))
            for i, (p, v) in enumerate(zip(self.parameters, self.velocity))
        }

    def load_state_dict(self, state):
        for i, p in enumerate(self.parameters):
            value = state[f"velocity.{i}"]
            if value.shape != p.shape:
                raise ValueError(f"SGD.load_state_dict: velocity.{i} has shape {value.shape}, parameter has {p.shape}")
            self.velocity[i] = p.backend.asarray(value.astype(p.dtype))


def _like_parameter(array, p):
    """``array`` on ``p``'s backend and in its dtype: itself if it is already, else a copy."""
    if p.backend.owns(array) and array.dtype == p.dtype:
        return array
    return p.backend.asarray(backend_of(array).to_numpy(array).astype(p.dtype))
