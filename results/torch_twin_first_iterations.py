"""Is a tinyres training curve tinyres's doing, or the network's? Train PyTorch's twin of a CIFAR
net (benchmarks/torch_reference.py) from tinyres's own seed-0 initial weights, on the same
augmented batches (tinyres's loader, seed 0), with the same recipe at lr 0.1, and print its mean
loss and error every 25 iterations.

    python results/torch_twin_first_iterations.py 56 plain 100      # DEPTH plain|resnet ITERATIONS

Run from the repository root with CIFAR-10 in data/ and torch installed (one thread).
"""
import sys, time
sys.path.insert(0, "benchmarks")  # torch_reference.py
import numpy as np, torch, tinyres
from tinyres.models import cifar_resnet
from tinyres.data import cifar10_loaders
from torch_reference import CifarResNet, load_tinyres_weights
torch.set_num_threads(1)
depth, plain, iters = int(sys.argv[1]), sys.argv[2] == "plain", int(sys.argv[3])
tinyres.manual_seed(0)
ours = cifar_resnet(depth, plain=plain)
net = CifarResNet(depth, plain=plain); load_tinyres_weights(net, ours)
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
train, _, _ = cifar10_loaders("data", 128, seed=0)
losses, errs, t = [], [], time.time()
for i, (x, y) in enumerate(train.epoch(0)):
    if i == iters: break
    out = net(torch.from_numpy(x.data)); loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y).long())
    opt.zero_grad(); loss.backward(); opt.step()
    losses.append(loss.item()); errs.append((out.argmax(1).numpy() != y).mean())
    if (i + 1) % 25 == 0:
        print(f"torch {'plain' if plain else 'resnet'}-{depth} iter {i+1}: mean loss {np.mean(losses[-25:]):.4f} err {100*np.mean(errs[-25:]):.1f}%  ({time.time()-t:.0f}s)", flush=True)
