"""The same CIFAR ResNets in PyTorch, for side-by-side benchmarks and model tests.

Only benchmarks and tests import this file, and only where torch is installed; tinyres itself
never depends on PyTorch. The architecture mirrors tinyres.models.cifar_resnet exactly (option A
shortcuts append zero channels), so the two do the same arithmetic.
"""

import torch
from torch import nn
from torch.nn import functional as F

from tinyres.models.cifar import blocks_per_stage


class BasicBlock(nn.Module):
    def __init__(self, in_channels, channels, stride, plain):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.plain, self.stride, self.extra = plain, stride, channels - in_channels

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if not self.plain:
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.extra:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
            out = out + shortcut
        return F.relu(out)


class CifarResNet(nn.Module):
    def __init__(self, depth, plain=False, num_classes=10):
        super().__init__()
        n = blocks_per_stage(depth)  # as tinyres's: another depth would silently build another network
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_channels = [], 16
        for index, channels in enumerate((16, 32, 64)):
            for b in range(n):
                layers.append(BasicBlock(in_channels, channels, 2 if index and not b else 1, plain))
                in_channels = channels
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def load_tinyres_weights(torch_model, tinyres_model):
    """Copy a tinyres CIFAR ResNet's parameters and buffers into the torch twin, in order."""
    ours = [v for _, v in sorted_state(tinyres_model)]
    theirs = [t for name, t in torch_model.state_dict().items() if not name.endswith("num_batches_tracked")]
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    with torch.no_grad():
        for t, value in zip(theirs, ours):
            t.copy_(torch.from_numpy(value).reshape(t.shape))


def sorted_state(tinyres_model):
    """tinyres state in the order torch's state_dict lists the same tensors."""
    state = tinyres_model.state_dict()
    order = []
    for prefix, module in tinyres_model.named_modules():
        names = [n for n, v in vars(module).items() if hasattr(v, "requires_grad") or n in getattr(module, "_buffers", [])]
        for name in ("weight", "bias", "running_mean", "running_var"):
            if name in names and getattr(module, name) is not None:
                key = f"{prefix}.{name}" if prefix else name
                order.append((key, state[key]))
    return order
