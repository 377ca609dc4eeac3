"""The Python integer reference: executes an :class:`IntegerModel` with exactly the arithmetic of
docs/export.md (and of the C runtime), on int64 tensors, for a batch of int8 images."""

import torch
from torch.nn import functional as F

from .integer_model import ConvLayer, ConvResidual, FoldedLIF, IdentityResidual, IntegerModel, PoolLayer

INT64_LIMIT = 2**62


def _exact_conv(inputs: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """Integer convolution through float64 (exact: every partial sum is far below 2^53)."""
    return torch.round(F.conv2d(inputs.double(), weight.double(), stride=stride, padding=padding)).long()


def _signs(negative) -> torch.Tensor:
    """Packed-bit convention: True (bit 1) is weight -1, False is +1."""
    return 1 - 2 * torch.as_tensor(negative).long()


def round_half_even_shift(value: torch.Tensor, bits: int) -> torch.Tensor:
    """``round_half_even(value / 2^bits)`` in integers (arithmetic shift, then the remainder)."""
    floor = value >> bits
    remainder = value - (floor << bits)
    half = 1 << (bits - 1)
    return floor + ((remainder > half) | ((remainder == half) & (floor & 1).bool())).long()


def lif_steps(lif: FoldedLIF, currents: list[torch.Tensor]) -> torch.Tensor:
    """Run the integer LIF over T steps; ``currents[t]`` is ``M_c acc + B_c (+ residual)`` per
    neuron ``[B, C, H, W]``. Returns spikes ``[T, B, C, H, W]`` (int64 0/1)."""
    q = torch.zeros_like(currents[0])
    spikes = []
    for current in currents:
        membrane = q * (1 << (lif.fraction_bits - lif.tau_shift)) + current
        if membrane.abs().max() >= INT64_LIMIT:
            raise OverflowError("integer membrane left the int64 range; the fraction bits are too many")
        fired = membrane >= lif.threshold
        level = round_half_even_shift(membrane, lif.fraction_bits).clamp(-lif.levels, lif.levels)
        q = torch.where(fired, torch.zeros_like(level), level)
        spikes.append(fired.long())
    return torch.stack(spikes)


def _per_channel(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.long).view(1, -1, 1, 1)


def _conv_currents(layer: ConvLayer, maps: list[torch.Tensor]) -> list[torch.Tensor]:
    source = maps[layer.source]  # [T, B, C, H, W]
    weight = _signs(layer.negative)
    currents = []
    for t in range(source.shape[0]):
        acc = _exact_conv(source[t], weight, layer.stride, layer.padding)
        current = _per_channel(layer.lif.multiplier) * acc + _per_channel(layer.lif.bias)
        if isinstance(layer.residual, ConvResidual):
            shortcut = _exact_conv(maps[layer.residual.source][t], _signs(layer.residual.negative), layer.residual.stride, 0)
            current = current + _per_channel(layer.residual.multiplier) * shortcut
        elif isinstance(layer.residual, IdentityResidual):
            current = current + layer.residual.scale * maps[layer.residual.source][t]
        currents.append(current)
    return currents


def _pool(source: torch.Tensor) -> torch.Tensor:
    """2x2 sum pooling (counts 0..4) of every step; odd edges are dropped as AvgPool2d does."""
    steps, batch = source.shape[:2]
    pooled = F.avg_pool2d(source.flatten(0, 1).double(), 2) * 4
    return torch.round(pooled).long().unflatten(0, (steps, batch))


def run(model: IntegerModel, images: torch.Tensor) -> torch.Tensor:
    """T-summed integer logits ``[B, classes]`` (int64) of int8 images ``[B, C, H, W]``."""
    stem = model.stem
    acc = _exact_conv(images.long(), torch.as_tensor(stem.weight).long(), stem.stride, stem.padding)
    current = _per_channel(stem.lif.multiplier) * acc + _per_channel(stem.lif.bias)
    maps = [lif_steps(stem.lif, [current] * model.timesteps)]
    for layer in model.layers:
        if isinstance(layer, PoolLayer):
            maps.append(_pool(maps[layer.source]))
        else:
            maps.append(lif_steps(layer.lif, _conv_currents(layer, maps)))
    head = model.head
    source = maps[head.source]  # [T, B, C, H, W]
    features = source.sum(dim=(-2, -1)) if head.global_pool else source.flatten(2)
    weight = torch.as_tensor(head.weight).long()
    per_step = features @ weight.T + torch.as_tensor(head.bias).long()  # [T, B, classes]
    return per_step.sum(0)


def predict(logits: torch.Tensor) -> torch.Tensor:
    """The first index of the largest logit, as the C runtime returns it."""
    return logits.argmax(dim=1)
