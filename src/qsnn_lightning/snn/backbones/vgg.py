"""VGG-style spiking backbones: VGG16 (13 conv), VGGSNN (8 conv + 1 fc, TET's DVS network) and
small nets for Fashion-MNIST and for DVS-Gesture on a microcontroller, all described by a list of
conv widths and pools ("P")."""

import torch
from torch import nn

from ..layers import AvgPool, LayerFactory, MultiStep
from ..segments import Segment, chain_segments, leading_pools, levels_after
from .base import SpikingBackbone

POOL = "P"
VGG16 = (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512)
VGGSNN = (64, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL)
# Fashion-MNIST (1x28x28): 28 -> 14 -> 7 -> 3, a 576-input 8-bit classifier (5.8 KB at 10
# classes) and 25,088 spiking neurons: it trains on a 2-core CPU in minutes and a 1w-2u export
# fits a Cortex-M4 with 256 KB of flash and 64 KB of RAM.
FMNISTNET = (16, POOL, 32, POOL, 64, 64, POOL)
# DVS-Gesture on a Cortex-M4 (2x32x32 frames, resize_mode area): 32 -> 16 -> 8 -> 4 -> 2, a 512-input
# 8-bit classifier, each binary conv 1,179,648 multiply-accumulates per step. At 1w-2u, 11
# classes: weights 18,016 bytes (8-bit stem 288, binary convs 576 + 2,304 + 9,216, 8-bit fc 5,632);
# 2-bit membranes kept between steps 7,680 bytes (30,720 neurons); the largest two consecutive
# spike maps of a step 3,584 bytes (stem spikes 16x32x32 bits, pooled 16x16x16 at 3 bits).
DVSMCUNET = (16, POOL, 32, POOL, 64, POOL, 128, POOL)


class VGG(SpikingBackbone):
    """conv3x3-BN-LIF layers with 2x2 average pooling at each ``"P"``, then one fc.

    ``head="gap"`` averages the last spike maps over space before the fc (VGG16, as in
    Table 2's accounting); ``head="flatten"`` flattens them (TET's VGGSNN).
    """

    HEADS = ("gap", "flatten")

    def __init__(
        self,
        factory: LayerFactory,
        config: tuple,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        timesteps: int = 2,
        head: str = "gap",
        activation_memory: str = "full",
    ):
        super().__init__(factory, timesteps, input_shape, num_classes, activation_memory)
        if head not in self.HEADS:
            raise ValueError(f"head must be one of {self.HEADS}, got {head!r}")
        channels, height, width = input_shape
        pools = config.count(POOL)
        if min(height, width) < 2**pools:
            raise ValueError(f"input {height}x{width} is too small for {pools} 2x2 poolings")
        self.head = head
        self.stem = factory.conv_bn(channels, config[0], 3, edge=True)
        self.stem_lif = factory.lif()
        layers, cin = [], config[0]
        for previous, item in zip(config, config[1:]):
            if item == POOL:
                layers.append(MultiStep(AvgPool(2)))
                height, width = height // 2, width // 2
            else:
                layers += [factory.conv_bn(cin, item, 3, spikes_in=previous != POOL), factory.lif()]
                cin = item
        self.features = nn.Sequential(*layers)
        features = cin if head == "gap" else cin * height * width
        self.fc = factory.classifier(features, num_classes)

    def segments(self, static: bool = False) -> list[Segment]:
        """The stem, then one ``conv-BN-LIF [pool]`` block per conv."""
        pools = leading_pools(self.features)
        stem = self.stem_segment(self.stem, self.stem_lif, pools, static)
        return [stem, *chain_segments(self.features[len(pools):], levels_after(stem.modules))]

    def classify(self, spikes: torch.Tensor) -> torch.Tensor:
        """Per-step logits ``[T, B, classes]``: the fc on the last spike maps averaged over space (``"gap"``) or flattened."""
        pooled = spikes.mean(dim=(-2, -1)) if self.head == "gap" else spikes.flatten(2)
        return self.fc(pooled)
