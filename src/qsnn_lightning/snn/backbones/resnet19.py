"""ResNet19 as used for CIFAR in the paper (the authors' release; NOTES.md section 3).

Stem conv3x3 (8-bit) + BN + LIF; three stages of BasicBlocks, widths 128/256/512, blocks 3/3/2,
strides 1/2/2; global average pooling; fc (8-bit). 12,569,226 parameters for 10 classes.
"""

import torch
from torch import nn

from ..layers import LayerFactory
from ..segments import Segment
from .base import SpikingBackbone


class BasicBlock(nn.Module):
    """conv-BN-LIF-conv-BN, plus a 1x1 conv-BN shortcut when the shape changes, LIF after the add."""

    def __init__(self, factory: LayerFactory, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = factory.conv_bn(cin, cout, 3, stride, spikes_in=True)
        self.lif1 = factory.lif()
        self.conv2 = factory.conv_bn(cout, cout, 3, spikes_in=True)
        self.shortcut = factory.conv_bn(cin, cout, 1, stride, spikes_in=True) if stride != 1 or cin != cout else nn.Identity()
        self.lif2 = factory.lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``lif2(conv2(lif1(conv1(x))) + shortcut(x))`` on spikes ``[T, B, C, H, W]`` (each conv with its BN)."""
        return self.lif2(self.conv2(self.lif1(self.conv1(x))) + self.shortcut(x))


class ResNet19(SpikingBackbone):
    """ResNet19 (module docstring): 8-bit stem conv-BN-LIF, stages of :class:`BasicBlock` given by ``widths``,
    ``blocks`` and ``strides``, global average pooling, 8-bit fc."""

    def __init__(
        self,
        factory: LayerFactory,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        timesteps: int = 2,
        widths: tuple[int, ...] = (128, 256, 512),
        blocks: tuple[int, ...] = (3, 3, 2),
        strides: tuple[int, ...] = (1, 2, 2),
        activation_memory: str = "full",
    ):
        super().__init__(factory, timesteps, input_shape, num_classes, activation_memory)
        self.stem = factory.conv_bn(input_shape[0], widths[0], 3, edge=True)
        self.stem_lif = factory.lif()
        stages, cin = [], widths[0]
        for width, count, stride in zip(widths, blocks, strides):
            for index in range(count):
                stages.append(BasicBlock(factory, cin, width, stride if index == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*stages)
        self.fc = factory.classifier(cin, num_classes)

    def segments(self, static: bool = False) -> list[Segment]:
        """The stem, then one segment per residual block."""
        return [self.stem_segment(self.stem, self.stem_lif, static=static), *(Segment((block,)) for block in self.blocks)]

    def classify(self, spikes: torch.Tensor) -> torch.Tensor:
        """Per-step logits ``[T, B, classes]``: the fc on the spikes averaged over space."""
        return self.fc(spikes.mean(dim=(-2, -1)))  # global average pooling, then [T, B, classes]
