"""The network as NeuroBench can read it: a copy of a backbone that computes the same logits with
plain ``nn.Conv2d`` / ``nn.Linear`` layers and a LIF called one time step at a time.

Why a copy: NeuroBench 2.3.0 counts synaptic operations by running a copy of each conv or linear
layer with its weights set to 1 (``make_binary_copy`` then ``layer(inputs)``); our ``QConv2d``
would quantize those ones again (WS-DR standardizes them to 0/0), so the view holds the deployed
weights ``Q(w)`` (+-alpha binary, 8-bit first and last) in plain layers. And NeuroBench counts
membrane updates per call of a neuron (snnTorch neurons are called once per step), while our LIF
runs all T steps in one call; the view calls it once per step, carrying its state between calls
as streaming does. Neither change alters a value: tests/test_bench.py checks the logits bit for bit.
"""

import copy

import torch
from torch import nn

from ..snn.backbones import SpikingBackbone
from ..snn.layers import QConv2d, QLinear
from ..snn.neurons import LIF
from ..snn.quant import FullPrecisionWeight


class SteppedLIF(nn.Module):
    """A LIF (``self.neuron``) run on ``[T, B, ...]`` one step per call: the same spikes and state."""

    def __init__(self, neuron: LIF):
        super().__init__()
        self.neuron = neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The spikes ``[T, B, ...]`` of ``x``, step t in call t (the membrane carried between calls)."""
        return torch.cat([self.neuron(x[step:step + 1]) for step in range(len(x))])


def deployed_weight(layer: "QConv2d | QLinear") -> torch.Tensor:
    """The weight the layer computes with: ``Q(w)``, or ``w`` itself at 32 bits."""
    if isinstance(layer.weight_quant, FullPrecisionWeight):
        return layer.weight.detach().clone()
    with torch.no_grad():
        return layer.weight_quant.quantize(layer.weight)[0]


def plain_layer(layer: "QConv2d | QLinear") -> "nn.Conv2d | nn.Linear":
    """An ``nn.Conv2d`` / ``nn.Linear`` with ``layer``'s geometry, its deployed weight and its bias."""
    if isinstance(layer, QConv2d):
        plain = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          layer.dilation, layer.groups, bias=layer.bias is not None, padding_mode=layer.padding_mode)
    else:
        plain = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    plain.weight = nn.Parameter(deployed_weight(layer), requires_grad=False)
    if layer.bias is not None:
        plain.bias = nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
    return plain


def deployed_view(backbone: SpikingBackbone) -> SpikingBackbone:
    """A copy of ``backbone`` in eval mode with plain layers and :class:`SteppedLIF` neurons, on the
    full path (the lean path's chunked evaluation gives the same values by its own tests)."""
    view = copy.deepcopy(backbone).eval()
    view.activation_memory = "full"
    for name, module in list(view.named_modules()):
        if isinstance(module, (QConv2d, QLinear)):
            replacement = plain_layer(module)
        elif isinstance(module, LIF):
            replacement = SteppedLIF(module)
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(view.get_submodule(parent), child, replacement)
    return view
