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
"""

import tinyres.nn.functional as F
from tinyres import nn
from tinyres.models.blocks import BasicBlock, Bottleneck

# depth -> (block, blocks per stage), Table 1's columns
CONFIGS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ImageNetResNet(nn.Module):
    def __init__(self, depth, plain=False, num_classes=1000, shortcut="B"):
        super().__init__()
        if not isinstance(depth, int) or depth not in CONFIGS:
            raise ValueError(
                f"imagenet_resnet: depth must be one of {', '.join(map(str, CONFIGS))} (the paper's "
                f"Table 1), got {depth!r}"
            )
        block, blocks_per_stage = CONFIGS[depth]
        self.depth, self.plain, self.shortcut_option = depth, plain, shortcut
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for index, (channels, blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage), start=1):
            stage = []
            for b in range(blocks):
                stride = 2 if index > 1 and b == 0 else 1
                stage.append(block(in_channels, channels, stride, plain, shortcut))
                in_channels = channels * block.expansion
            setattr(self, f"stage{index}", nn.Sequential(*stage))
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.fc(F.global_avg_pool2d(x))


def imagenet_resnet(depth, plain=False, num_classes=1000, shortcut="B"):
    """ResNet-``depth`` (18, 34, 50, 101 or 152) for 224x224 images (``plain=True``: the same net
    without shortcuts; ``shortcut="A"`` or ``"C"``: the other options of Table 3)."""
    return ImageNetResNet(depth, plain, num_classes, shortcut)
