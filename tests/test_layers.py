"""Quantized-weight layers: gradients of the recomputing op, what they keep, weight quantization once per forward."""

import pytest
import torch
from torch.nn import functional as F

from qsnn_lightning.snn.backbones import build_model
from qsnn_lightning.snn.layers import QConv2d, QLinear
from qsnn_lightning.snn.quant import BinaryWeight, IntWeight
from qsnn_lightning.snn.spec import ModelSpec

QUANTIZERS = [BinaryWeight("layer"), BinaryWeight("channel"), IntWeight(8)]


def plain(layer, x):
    """What autograd computes through the quantizer and the op, keeping everything."""
    if isinstance(layer, QConv2d):
        return F.conv2d(x, layer.weight_quant(layer.weight), layer.bias, layer.stride, layer.padding)
    return F.linear(x, layer.weight_quant(layer.weight), layer.bias)


@pytest.mark.parametrize("quant", QUANTIZERS, ids=lambda q: f"{type(q).__name__}-{getattr(q, 'standardize', q.bits)}")
@pytest.mark.parametrize("kind", ["conv", "conv_bias_stride", "conv_spikes_in", "linear"])
def test_recomputed_weight_gives_autograd_values_and_gradients(quant, kind):
    torch.manual_seed(0)
    if kind == "linear":
        layer, x = QLinear(12, 5, weight_quant=quant).double(), torch.randn(3, 4, 12, dtype=torch.float64)
    else:
        bias, stride = kind == "conv_bias_stride", 2 if kind == "conv_bias_stride" else 1
        spikes = kind == "conv_spikes_in"
        layer = QConv2d(3, 6, 3, stride=stride, padding=1, bias=bias, weight_quant=quant, binary_input=spikes).double()
        x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
        if spikes:
            x = (x > 0.3).double()
    upstream = torch.randn_like(plain(layer, x))
    results = []
    for forward in (layer, lambda x: plain(layer, x)):
        x_leaf = x.clone().requires_grad_()
        layer.zero_grad()
        out = forward(x_leaf)
        (out * upstream).sum().backward()
        results.append([out.detach(), x_leaf.grad] + [p.grad.clone() for p in layer.parameters()])
    for ours, reference in zip(*results):
        torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    assert results[0][2].abs().sum() > 0


def test_quantized_layer_keeps_input_latent_weight_and_small_statistics_only():
    layer = QConv2d(4, 8, 3, padding=1, weight_quant=BinaryWeight())
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        layer(x)
    assert saved[0] is x and saved[1] is layer.weight  # no copy, no quantized weight
    assert [t.numel() for t in saved[2:]] == [1, 1, 8]  # mu and sigma of the layer (Eq. 14), alpha_w per channel
    layer.binary_input, saved[:] = True, []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        layer((x > 0).float().requires_grad_())
    assert saved[0].dtype == torch.bool and saved[1] is layer.weight  # spikes kept in one byte each


@pytest.mark.parametrize("arch, shape", [("resnet19", (3, 8, 8)), ("vggsnn", (2, 16, 16)), ("fmnistnet", (1, 28, 28))])
def test_layers_declared_to_read_spikes_read_only_zeros_and_ones(arch, shape):
    model = build_model(ModelSpec(arch=arch, bits="1w2u", timesteps=2), input_shape=shape).train()
    seen = {}
    for name, layer in model.named_modules():
        if isinstance(layer, QConv2d):
            layer.register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name, (m.binary_input, args[0])))
    model(torch.rand(3, *shape) * 3)
    declared = {name for name, (binary, _) in seen.items() if binary}
    assert declared and all(((x == 0) | (x == 1)).all() for binary, x in seen.values() if binary)
    undeclared_spikes = {name for name, (binary, x) in seen.items() if not binary and ((x == 0) | (x == 1)).all()}
    assert not undeclared_spikes  # pooled spike maps and images are not binary here


def test_weights_are_quantized_once_per_forward_whatever_the_timesteps():
    model = build_model(ModelSpec(arch="fmnistnet", bits="1w2u", timesteps=4), input_shape=(1, 28, 28)).train()
    layers = [m for m in model.modules() if isinstance(m, (QConv2d, QLinear))]
    calls = []
    for layer in layers:
        quant = layer.weight_quant
        quant.quantize = lambda w, quant=quant, quantize=quant.quantize: calls.append(quant) or quantize(w)
    model(torch.rand(3, 1, 28, 28))
    assert len(calls) == len(layers) == 5
    model.eval()(torch.rand(3, 1, 28, 28))
    assert len(calls) == 2 * len(layers)


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_bf16_autocast_gives_what_autocast_gives_through_autograd(kind):
    torch.manual_seed(0)
    if kind == "conv":
        layer, x = QConv2d(4, 6, 3, padding=1, weight_quant=BinaryWeight(), binary_input=True), (torch.rand(2, 4, 6, 6) > 0.5).float()
    else:
        layer, x = QLinear(12, 5, weight_quant=IntWeight(8)), torch.randn(3, 12)
    results = []
    for forward in (layer, lambda x: plain(layer, x)):
        x_leaf = x.clone().requires_grad_()
        layer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = forward(x_leaf)
        out.float().square().sum().backward()
        results.append([out, x_leaf.grad, layer.weight.grad])
    assert results[0][0].dtype == torch.bfloat16 and results[0][2].dtype == torch.float32
    for ours, reference in zip(*results):
        torch.testing.assert_close(ours, reference)
