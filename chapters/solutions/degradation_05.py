"""Worked solution to chapter 5, exercise 4: the norm of the loss gradient with respect to every
convolution's weight, after one forward and one backward pass in training mode."""

import numpy as np

import tinyres.nn.functional as F


def conv_grad_norms(model, images, labels):
    # (leaves the model in training mode, its batch norms' running statistics moved by this batch,
    # as any training-mode forward does: give it a copy you still want to evaluate unchanged)
    model.train()  # batch norm on the batch's own statistics, as during training
    model.zero_grad()  # backward adds into .grad: drop what an earlier pass left there
    F.cross_entropy(model(images), labels).backward()
    # the convolutions' weights are the 4-dimensional parameters: (out, in, kernel height, kernel width)
    return np.array([float((p.grad * p.grad).sum()) ** 0.5 for _, p in model.named_parameters() if p.ndim == 4])
