"""The Python integer reference: executes an :class:`IntegerModel` with exactly the arithmetic of
docs/export.md (and of the C runtime), one time step at a time through the whole network, on
int64 tensors holding int32 values, for a batch of int8 inputs.

:class:`Stream` is the runtime's streaming API (``qsnn_reset`` / ``qsnn_step``); :func:`run` is
``qsnn_classify``: a reset, then T steps of a static image or of T event frames. A stream made
with ``count_accumulates=True`` also counts the synaptic accumulates driven by spikes
(:func:`spike_accumulates`), the figure NeuroBench calls effective ACs (``qsnn bench``).
"""

import torch
from torch.nn import functional as F

from .integer_model import (
    INT32_LIMIT,
    ConvLayer,
    ConvResidual,
    FoldedLIF,
    IdentityResidual,
    IntegerModel,
    PoolLayer,
    StemLayer,
)


def _exact_conv(inputs: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """Integer convolution through float64 (exact: every partial sum is far below 2^53)."""
    return torch.round(F.conv2d(inputs.double(), weight.double(), stride=stride, padding=padding)).long()


def _signs(negative) -> torch.Tensor:
    """Packed-bit convention: True (bit 1) is weight -1, False is +1."""
    return 1 - 2 * torch.as_tensor(negative).long()


def _per_channel(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.long).view(1, -1, 1, 1)


def _int32(value: torch.Tensor) -> torch.Tensor:
    """The export's bounds keep every value of a step in int32; a value outside is a bug, not data."""
    if value.numel() and value.abs().max() >= INT32_LIMIT:
        raise OverflowError("an integer membrane left the int32 range: the export's bounds are wrong")
    return value


def round_half_even_shift(value: torch.Tensor, bits: int) -> torch.Tensor:
    """``round_half_even(value / 2^bits) = (value + 2^(bits-1) - 1 + ((value >> bits) & 1)) >> bits``."""
    return (value + (1 << (bits - 1)) - 1 + ((value >> bits) & 1)) >> bits


def lif_step(lif: FoldedLIF, level: torch.Tensor, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the integer LIF (Eq. 10 folded): ``U = (q << (F - m)) + current``, spike if
    ``U >= Theta``, hard reset, else ``q = clamp(round_half_even(U / 2^F), -n, n)``.
    Returns (spikes 0/1, the new levels q)."""
    membrane = _int32((level << (lif.fraction_bits - lif.tau_shift)) + _int32(current))
    fired = membrane >= lif.threshold
    kept = round_half_even_shift(membrane, lif.fraction_bits).clamp(-lif.levels, lif.levels)
    return fired.long(), torch.where(fired, torch.zeros_like(kept), kept)


def stem_current(stem: StemLayer, frame: torch.Tensor) -> torch.Tensor:
    """``((M_c * acc) >> S) + B_c`` of the int8 frame ``[B, C, H, W]`` (the product is 64-bit)."""
    acc = _exact_conv(frame.long(), torch.as_tensor(stem.weight).long(), stem.stride, stem.padding)
    return ((_per_channel(stem.lif.multiplier) * acc) >> stem.lif.product_shift) + _per_channel(stem.lif.bias)


def conv_current(layer: ConvLayer, maps: list[torch.Tensor]) -> torch.Tensor:
    """``M_c * acc + B_c`` (+ the shortcut's ``M'_c * acc'`` or ``R * spike``) of one step."""
    acc = _exact_conv(maps[layer.source], _signs(layer.negative), layer.stride, layer.padding)
    current = _per_channel(layer.lif.multiplier) * acc + _per_channel(layer.lif.bias)
    if isinstance(layer.residual, ConvResidual):
        shortcut = _exact_conv(maps[layer.residual.source], _signs(layer.residual.negative), layer.residual.stride, 0)
        current = current + _per_channel(layer.residual.multiplier) * shortcut
    elif isinstance(layer.residual, IdentityResidual):
        current = current + layer.residual.scale * maps[layer.residual.source]
    return current


def sum_pool(spikes: torch.Tensor) -> torch.Tensor:
    """2x2 sum pooling (counts 0..4); odd edges are dropped as AvgPool2d does."""
    return torch.round(F.avg_pool2d(spikes.double(), 2) * 4).long()


def _fan_out_sum(inputs: torch.Tensor, out_channels: int, kernel: int, stride: int, padding: int) -> int:
    """Sum over the nonzero entries of ``inputs`` ``[B, C, H, W]`` of the outputs each one reaches
    through a ``kernel`` x ``kernel`` conv (``out_channels`` outputs per reached position, fewer
    positions at the padded edges): a conv of the nonzero mask with all-ones weights, summed."""
    mask = (inputs != 0).sum(dim=1, keepdim=True).double()
    reached = F.conv2d(mask, torch.ones(1, 1, kernel, kernel, dtype=torch.float64), stride=stride, padding=padding)
    return int(reached.sum().item()) * out_channels


def spike_accumulates(model: IntegerModel, maps: list[torch.Tensor]) -> int:
    """Accumulates of one step driven by spikes: for every synapse layer that reads a spike map
    (values 0/1; a pooled count map or the input frames are not spikes), each input spike times
    its fan-out, i.e. the number of (spike, weight) pairs added into a membrane or a logit. Binary
    weights are never zero; the head's int8 zeros are skipped (no work for them)."""
    spike_maps = [info.max_value == 1 for info in model.maps()]
    total = 0
    for layer in model.layers:
        if not isinstance(layer, ConvLayer):
            continue
        cout, _, kernel, _ = layer.negative.shape
        if spike_maps[layer.source]:
            total += _fan_out_sum(maps[layer.source], cout, kernel, layer.stride, layer.padding)
        if isinstance(layer.residual, ConvResidual) and spike_maps[layer.residual.source]:
            total += _fan_out_sum(maps[layer.residual.source], cout, 1, layer.residual.stride, 0)
    head = model.head
    if spike_maps[head.source] and not head.global_pool:  # a global pool sums spikes into counts first
        nonzero_weights = torch.as_tensor(head.weight != 0).long().sum(dim=0)  # per feature
        total += int(((maps[head.source].flatten(1) != 0).long() * nonzero_weights).sum())
    return total


class Stream:
    """The membrane levels of every spiking layer and the logits summed since :meth:`reset`, for a
    batch of independent streams; with ``count_accumulates``, ``accumulates`` counts the spike-driven
    accumulates of every step since the stream was made (:func:`spike_accumulates`); ``spikes`` and
    ``neuron_steps`` count the spikes and the neurons fired, every step since it was made."""

    def __init__(self, model: IntegerModel, count_accumulates: bool = False):
        self.model = model
        self.levels: list[torch.Tensor | None] = []
        self.logits: torch.Tensor | None = None
        self.count_accumulates = count_accumulates
        self.accumulates = 0
        self.spikes = 0
        self.neuron_steps = 0
        self.reset()

    def reset(self) -> None:
        """``qsnn_reset``: every level 0, logits 0 (``accumulates`` keeps counting)."""
        self.levels = [None] * len(self.model.spiking_layers())
        self.logits = None

    def _fire(self, index: int, lif: FoldedLIF, current: torch.Tensor) -> torch.Tensor:
        level = self.levels[index] if self.levels[index] is not None else torch.zeros_like(current)
        spikes, self.levels[index] = lif_step(lif, level, current)
        self.spikes += int(spikes.sum())
        self.neuron_steps += spikes.numel()
        return spikes

    def step(self, frame: torch.Tensor) -> torch.Tensor:
        """``qsnn_step``: one time step of int8 frames ``[B, C, H, W]``; returns the logits summed
        since the reset ``[B, classes]``."""
        model = self.model
        maps = [self._fire(0, model.stem.lif, stem_current(model.stem, frame))]
        spiking = 0
        for layer in model.layers:
            if isinstance(layer, PoolLayer):
                maps.append(sum_pool(maps[layer.source]))
            else:
                spiking += 1
                maps.append(self._fire(spiking, layer.lif, conv_current(layer, maps)))
        head = model.head
        source = maps[head.source]
        features = source.sum(dim=(-2, -1)) if head.global_pool else source.flatten(1)
        step_logits = features @ torch.as_tensor(head.weight).long().T + torch.as_tensor(head.bias).long()
        if self.count_accumulates:
            self.accumulates += spike_accumulates(model, maps)
        self.logits = step_logits if self.logits is None else self.logits + step_logits
        return _int32(self.logits)


def run(model: IntegerModel, inputs: torch.Tensor) -> torch.Tensor:
    """T-summed integer logits ``[B, classes]`` of int8 images ``[B, C, H, W]`` (the same image at
    every step) or event frames ``[B, T, C, H, W]`` (frame t at step t)."""
    return classify(Stream(model), inputs)


def classify(stream: Stream, inputs: torch.Tensor) -> torch.Tensor:
    """``qsnn_classify`` on ``stream``: a reset, then T steps of ``inputs`` as :func:`run` reads them."""
    model = stream.model
    if inputs.dim() == 5 and inputs.shape[1] != model.timesteps:
        raise ValueError(f"got {inputs.shape[1]} frames per sample for a model of T = {model.timesteps}")
    stream.reset()
    for t in range(model.timesteps):
        logits = stream.step(inputs[:, t] if inputs.dim() == 5 else inputs)
    return logits


def accumulates(model: IntegerModel, inputs: torch.Tensor) -> int:
    """Spike-driven accumulates (:func:`spike_accumulates`) of classifying ``inputs``, summed over samples and steps."""
    stream = Stream(model, count_accumulates=True)
    classify(stream, inputs)
    return stream.accumulates


def firing_rate(model: IntegerModel, inputs: torch.Tensor) -> float:
    """The fraction of the spiking neurons' steps with a spike (every spiking layer, step and sample)
    when classifying ``inputs``: the runtime's work follows it."""
    stream = Stream(model)
    classify(stream, inputs)
    return stream.spikes / stream.neuron_steps


def predict(logits: torch.Tensor) -> torch.Tensor:
    """The first index of the largest logit, as the C runtime returns it."""
    return logits.argmax(dim=1)
