"""Layers with quantized weights, time folding, and the factory the backbones build from.

``QConv2d`` / ``QLinear`` keep latent fp32 weights and read them through their weight quantizer
(``layer.weight_quant``, which carries ``bits`` and the scales). Stateless layers run on all T
steps at once by folding time into the batch (``MultiStep``), so each weight is quantized once
per forward pass, not once per time step.
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from .neurons import LIF
from .precision import Precision
from .quant import FULL_PRECISION_BITS, FullPrecisionWeight, InputQuant


class QConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is read through ``weight_quant`` (Eq. 6 for binary layers)."""

    def __init__(self, *args, weight_quant: nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_quant = weight_quant if weight_quant is not None else FullPrecisionWeight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight_quant(self.weight), self.bias)


class QLinear(nn.Linear):
    """``nn.Linear`` whose weight is read through ``weight_quant``."""

    def __init__(self, *args, weight_quant: nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_quant = weight_quant if weight_quant is not None else FullPrecisionWeight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight_quant(self.weight), self.bias)


class MultiStep(nn.Sequential):
    """Run stateless modules on a ``[T, B, ...]`` sequence by folding T into the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, batch = x.shape[:2]
        return super().forward(x.flatten(0, 1)).unflatten(0, (steps, batch))


@dataclass(frozen=True)
class LayerFactory:
    """Builds the layers of a Q-SNN at one precision, so backbones only describe topology.

    ``standardize`` is the WS-DR weight standardization (``"layer"``, ``"channel"`` or ``"none"``);
    the neuron settings (``neuron``: ``"fused"`` or ``"reference"``, ``compile``) are those of
    :class:`~qsnn_lightning.neurons.LIF`. A subclass overriding :meth:`lif` builds the same
    topology around another neuron (the throughput benchmark does so for its peers).
    """

    precision: Precision = field(default_factory=lambda: Precision.parse("1w2u"))
    standardize: str = "layer"
    tau: float = 0.5
    theta: float = 1.0
    beta: float = 1.0
    quantize_before_spike: bool = False
    neuron: str = "fused"
    compile: bool = False

    def conv_bn(self, cin: int, cout: int, kernel: int, stride: int = 1, edge: bool = False) -> MultiStep:
        """Bias-free conv (same padding for odd kernels) and BatchNorm over ``[T, B, C, H, W]``."""
        conv = QConv2d(
            cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False,
            weight_quant=self.precision.weight_quant(edge, self.standardize),
        )
        return MultiStep(conv, nn.BatchNorm2d(cout))

    def classifier(self, features: int, classes: int) -> QLinear:
        """The last layer (8-bit in a Q-SNN), with bias."""
        return QLinear(features, classes, weight_quant=self.precision.weight_quant(True, self.standardize))

    def input_quant(self) -> InputQuant:
        """8-bit input pixels in a quantized network, full precision in the 32w baseline."""
        full = self.precision.weight_bits == FULL_PRECISION_BITS
        return InputQuant(FULL_PRECISION_BITS if full else 8)

    def lif(self) -> nn.Module:
        return LIF(
            tau=self.tau, theta=self.theta, beta=self.beta,
            membrane_bits=self.precision.membrane_bits,
            quantize_before_spike=self.quantize_before_spike, neuron=self.neuron, compile=self.compile,
        )
