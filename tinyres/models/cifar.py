"""The CIFAR-10 networks of the paper (section 4.2): depth 6n + 2.

    3x3 conv, 16 filters                                         32x32
    stage 1: n blocks of two 3x3 convs, 16 filters                32x32
    stage 2: n blocks, 32 filters (the first conv has stride 2)    16x16
    stage 3: n blocks, 64 filters (the first conv has stride 2)     8x8
    global average pooling, 10-way fully connected layer

n = 3, 5, 7, 9, 18, 200 give the paper's 20, 32, 44, 56, 110 and 1202 layers.

``tinyres.save_safetensors`` writes the weights in the names of the widely used PyTorch port of
these networks (``conv1``, ``bn1``, ``layer1``..``layer3``, ``linear``), and ``weights=`` loads such
a file; that port pads option A's zero channels on both sides, so its weights need
``zero_channels="both"`` (see ``blocks.py``).
"""

import tinyres.nn.functional as F
from tinyres import nn
from tinyres.models.blocks import BasicBlock, make_stage

PAPER_DEPTHS = (20, 32, 44, 56, 110, 1202)


def blocks_per_stage(depth):
    """n of a CIFAR ResNet with ``depth`` = 6n + 2 layers (the stem, three stages of n blocks of two
    layers, the classifier); a ValueError for any other depth."""
    if type(depth) is not int or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet's depth is 6n + 2 for a whole number n >= 1 (the paper uses "
                         f"{', '.join(map(str, PAPER_DEPTHS))}), got {depth!r}")
    return (depth - 2) // 6


class CifarResNet(nn.Module):
    def __init__(self, depth, plain=False, shortcut="A", num_classes=10, zero_channels="end"):
        super().__init__()
        try:
            blocks = blocks_per_stage(depth)
        except ValueError as error:
            raise ValueError(f"cifar_resnet: {error}") from None
        self.depth, self.plain, self.shortcut_option = depth, plain, shortcut
        self.zero_channels = zero_channels
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.stage1 = make_stage(BasicBlock, 16, 16, blocks, 1, plain, shortcut, zero_channels=zero_channels)
        self.stage2 = make_stage(BasicBlock, 16, 32, blocks, 2, plain, shortcut, zero_channels=zero_channels)
        self.stage3 = make_stage(BasicBlock, 32, 64, blocks, 2, plain, shortcut, zero_channels=zero_channels)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(F.global_avg_pool2d(x))


def cifar_resnet(depth, plain=False, shortcut="A", num_classes=10, zero_channels="end", weights=None,
                 pretrained=False):
    """ResNet-``depth`` for 32x32 images (``plain=True``: the same net without shortcuts).

    ``zero_channels``: where option A puts its zero channels, ``"end"`` (tinyres) or ``"both"``
    (the PyTorch port's). ``weights``: a ``.safetensors`` file to load, written by
    ``tinyres.save_safetensors`` or in the port's names (every name and shape is checked; see
    ``tinyres.load_safetensors``).

    ``pretrained=True``: the CIFAR-10 weights tinyres's reproduction runs trained, shipped with the
    package and checked against their SHA-256 (``tinyres.models.pretrained``); the model's
    ``pixel_mean`` is then the per-pixel mean to subtract from images scaled to [0, 1]. Shipped:
    {shipped}.
    """
    if pretrained and weights is not None:
        raise ValueError("cifar_resnet: give pretrained=True or weights=FILE, not both")
    model = CifarResNet(depth, plain, shortcut, num_classes, zero_channels)
    if pretrained:
        from tinyres.models.pretrained import load_pretrained

        load_pretrained(model)
    if weights is not None:
        from tinyres.interchange import load_safetensors

        load_safetensors(model, weights)
    return model


def _state_what_is_shipped():
    # the test errors live once, in shipped.SHIPPED; help(cifar_resnet) shows them
    from tinyres.models import shipped

    if cifar_resnet.__doc__:  # (None under python -OO)
        cifar_resnet.__doc__ = cifar_resnet.__doc__.replace("{shipped}", shipped.describe())


_state_what_is_shipped()
