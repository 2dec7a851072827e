"""Worked solution to chapter 8, exercise 4: the standard deviation of every 3x3 layer's response
of a CIFAR network, computed by running its forward pass by hand, batch by batch."""

import numpy as np

import tinyres
import tinyres.nn.functional as F


def responses_by_hand(model, images, batch_size=200):
    model.eval()  # batch norm on its running statistics
    count, total, squares = {}, {}, {}  # per layer index, over all batches so far, in float64

    def note(k, response):
        values = response.data.astype(np.float64)
        count[k] = count.get(k, 0) + values.size
        total[k] = total.get(k, 0.0) + values.sum()
        squares[k] = squares.get(k, 0.0) + (values * values).sum()
        return response

    with tinyres.no_grad():
        for start in range(0, len(images), batch_size):
            x = tinyres.Tensor(images[start : start + batch_size])
            x = F.relu(note(0, model.bn1(model.conv1(x))))  # the stem: layer 0
            k = 1
            for stage in (model.stage1, model.stage2, model.stage3):
                for block in stage:  # BasicBlock.forward, with its two responses noted
                    out = F.relu(note(k, block.bn1(block.conv1(x))))
                    out = note(k + 1, block.bn2(block.conv2(out)))
                    if block.shortcut is not None:
                        out = out + block.shortcut(x)
                    x = F.relu(out)
                    k += 2
    layers = sorted(count)
    mean = np.array([total[k] / count[k] for k in layers])
    variance = np.array([squares[k] / count[k] for k in layers]) - mean**2  # E[x^2] - E[x]^2
    return np.sqrt(np.maximum(variance, 0.0))
