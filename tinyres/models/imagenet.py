"""The ImageNet networks of the paper (Table 1): ResNet-18, 34, 50, 101 and 152.

    7x7 conv, 64 filters, stride 2; 3x3 max pool, stride 2            112x112, then 56x56
    stage 1: blocks of 64 base channels                                 56x56
    stage 2: 128 base channels (the first block has stride 2)           28x28
    stage 3: 256 base channels (the first block has stride 2)           14x14
    stage 4: 512 base channels (the first block has stride 2)            7x7
    global average pooling, 1000-way fully connected layer

ResNet-18/34 stack basic blocks (two 3x3 convs, output = base channels); ResNet-50/101/152 stack
bottlenecks (1x1-3x3-1x1, output = 4 x base channels). Shortcuts are option B: a 1x1 projection
where the shape changes, identity elsewhere (section 3.3). ``plain=True`` drops the shortcuts,
giving the plain-18/34 baselines of Figure 4 (and, beyond the paper, plain bottleneck nets).

At 224x224 they cost 1.8, 3.6, 3.8, 7.6 and 11.3 billion multiply-adds ("FLOPs" in Table 1);
``tinyres.models.summary`` counts them.

Bottlenecks subsample in their first 1x1 convolution by default, as the paper's models do (that
is what Table 1 counts, and what the chapters reproduce); ``stride_on="3x3"`` builds torchvision's
"v1.5" instead, which its pretrained weights need. ``tinyres.save_safetensors`` writes the
weights in torchvision's names (``layer1``.. for the stages, ``downsample`` for the projection
shortcuts), and ``weights=`` loads such a file, e.g. one converted from torchvision.
"""

import tinyres.nn.functional as F
from tinyres import nn
from tinyres.models.blocks import STRIDE_ON, BasicBlock, Bottleneck, make_stage

# depth -> (block, blocks per stage), Table 1's columns
CONFIGS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ImageNetResNet(nn.Module):
    def __init__(self, depth, plain=False, num_classes=1000, shortcut="B", stride_on="1x1"):
        super().__init__()
        if not isinstance(depth, int) or depth not in CONFIGS:
            raise ValueError(
                f"imagenet_resnet: depth must be one of {', '.join(map(str, CONFIGS))} (the paper's "
                f"Table 1), got {depth!r}"
            )
        block, (blocks1, blocks2, blocks3, blocks4) = CONFIGS[depth]
        expansion = block.expansion  # a stage's output has expansion x its base channels
        if stride_on not in STRIDE_ON:
            raise ValueError(f"imagenet_resnet: stride_on must be '1x1' (the paper's bottleneck) or '3x3' "
                             f"(torchvision's), got {stride_on!r}")
        options = {"stride_on": stride_on} if block is Bottleneck else {}
        self.depth, self.plain, self.shortcut_option, self.stride_on = depth, plain, shortcut, stride_on
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.stage1 = make_stage(block, 64, 64, blocks1, 1, plain, shortcut, **options)
        self.stage2 = make_stage(block, 64 * expansion, 128, blocks2, 2, plain, shortcut, **options)
        self.stage3 = make_stage(block, 128 * expansion, 256, blocks3, 2, plain, shortcut, **options)
        self.stage4 = make_stage(block, 256 * expansion, 512, blocks4, 2, plain, shortcut, **options)
        self.fc = nn.Linear(512 * expansion, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.fc(F.global_avg_pool2d(x))


def imagenet_resnet(depth, plain=False, num_classes=1000, shortcut="B", stride_on="1x1", weights=None):
    """ResNet-``depth`` (18, 34, 50, 101 or 152) for 224x224 images (``plain=True``: the same net
    without shortcuts; ``shortcut="A"`` or ``"C"``: the other options of Table 3).

    ``stride_on``: where a bottleneck subsamples, ``"1x1"`` (the paper) or ``"3x3"``
    (torchvision); ResNet-18/34 have no bottlenecks and ignore it. ``weights``: a
    ``.safetensors`` file to load, written by ``tinyres.save_safetensors`` or by torchvision
    (every name and shape is checked; see ``tinyres.load_safetensors``). For torchvision's weights of ResNet-50/101/152::

        imagenet_resnet(50, stride_on="3x3", weights="resnet50.safetensors")
    """
    model = ImageNetResNet(depth, plain, num_classes, shortcut, stride_on)
    if weights is not None:
        from tinyres.interchange import load_safetensors

        load_safetensors(model, weights)
    return model
