"""Stochastic gradient descent with momentum and weight decay, the paper's optimiser.

For each parameter p with gradient g, learning rate lr, momentum mu, weight decay wd:

    v <- mu * v + (g + wd * p)        (weight decay = the gradient of wd/2 * |p|^2)
    p <- p - lr * v

as in PyTorch's SGD. Updates are in place, on the parameter's own backend.
"""

import numpy as np


class SGD:
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
                    self.velocity[i] *= self.momentum
                    self.velocity[i] += step
                step = self.velocity[i]
            p.data -= self.lr * step

    def zero_grad(self):
        for p in self.parameters:
            p.grad = None

    def state_dict(self):
        """Momentum buffers as host NumPy arrays (zeros where none exists yet)."""
        return {
            f"velocity.{i}": (np.zeros(p.shape, p.dtype) if v is None else p.backend.to_numpy(v))
            for i, (p, v) in enumerate(zip(self.parameters, self.velocity))
        }

    def load_state_dict(self, state):
        for i, p in enumerate(self.parameters):
            value = state[f"velocity.{i}"]
            if value.shape != p.shape:
                raise ValueError(f"SGD.load_state_dict: velocity.{i} has shape {value.shape}, parameter has {p.shape}")
            self.velocity[i] = p.backend.asarray(value.astype(p.dtype))
