"""Is a tinyres training curve tinyres's doing, or the network's? Train PyTorch's twin of a CIFAR
net (benchmarks/torch_reference.py) from tinyres's own seed-0 initial weights, on the same
augmented batches (tinyres's loader, seed 0), with the same recipe at lr 0.1, and print its mean
loss and error every 25 iterations.

    python results/torch_twin_first_iterations.py 56 plain 100      # DEPTH plain|resnet ITERATIONS

Run from the repository root with CIFAR-10 in data/ and torch installed (one thread).
"""

import sys
import time

sys.path.insert(0, "benchmarks")  # torch_reference.py

import numpy as np
import torch

import tinyres
from tinyres.data import cifar10_loaders
from tinyres.models import cifar_resnet
from torch_reference import CifarResNet, load_tinyres_weights

torch.set_num_threads(1)
depth, plain, iterations = int(sys.argv[1]), sys.argv[2] == "plain", int(sys.argv[3])
name = f"{'plain' if plain else 'resnet'}-{depth}"

tinyres.manual_seed(0)  # python -m tinyres.train's default seed: the run's initial weights
net = CifarResNet(depth, plain=plain)
load_tinyres_weights(net, cifar_resnet(depth, plain=plain))
optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
train, _, _ = cifar10_loaders("data", 128, seed=0)

losses, errors, start = [], [], time.time()
for i, (images, labels) in enumerate(train.epoch(0)):
    if i == iterations:
        break
    logits = net(torch.from_numpy(images.data))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).long())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
    errors.append((logits.argmax(1).numpy() != labels).mean())
    if (i + 1) % 25 == 0:
        print(f"torch {name} iter {i + 1}: mean loss {np.mean(losses[-25:]):.4f} "
              f"err {100 * np.mean(errors[-25:]):.1f}%  ({time.time() - start:.0f}s)", flush=True)
