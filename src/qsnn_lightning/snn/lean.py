"""Memory-lean training with exact gradients (``speed.activation_memory=lean``).

A backbone is a chain of segments (the stem with its LIF; a ``conv-BN-LIF [pool]`` block; a
residual block), each a pure function of its input once its side effects are set apart. The
full path keeps, between the passes, every tensor autograd saves in every segment (VGGSNN at
2x128x128: 74.3 MB per sample and time step). The lean path keeps each segment's input alone,
in its true width (spikes 1 bit, 2x2-pooled spike counts k / 4 as the byte k), and runs the
segment again in the backward pass::

    forward:   y_s = f_s(x_s)               without autograd; keep pack(x_s)
    backward:  y_s = f_s(unpack(pack(x_s)))  with autograd: the same operations on the same values
               (dL/dx_s, dL/dW_s) = vjp(f_s)(dL/dy_s, dL/df_l)

so autograd holds one segment's tensors at a time. Gradients are those of the full path: the
recomputation repeats the forward pass's operations on bit-identical inputs. What must happen
once happens in the forward pass only: BatchNorm's running statistics and the membrane scales'
running alpha_u are put back after the recomputation, which restarts every LIF from a cleared
state (as the forward pass did) and leaves the forward pass's state and firing rates in place.
The firing rates f_l of Eq. 15 are outputs of the segment, so the WS-DR loss (Eq. 16) reaches
the recomputed spikes through them.

Only deterministic layers can be recomputed: :func:`lean_blockers` names any other leaf layer.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .layers import AvgPool, MultiStep, QConv2d, QLinear
from .neurons import LIF, spiking_layers
from .quant import BinaryWeight, FullPrecisionWeight, IntWeight, MembraneQuant

ACTIVATION_MEMORY_MODES = ("full", "lean")
RECOMPUTABLE = (
    QConv2d, QLinear, nn.modules.batchnorm._BatchNorm, LIF, MembraneQuant, BinaryWeight, IntWeight, FullPrecisionWeight,
    AvgPool, nn.AvgPool2d, nn.Identity, nn.Sequential, MultiStep,
)  # deterministic: the same input gives the same output, with no randomness to replay
_BIT_WEIGHTS = 2 ** torch.arange(8, dtype=torch.uint8)


def pack_spikes(spikes: torch.Tensor) -> torch.Tensor:
    """Spikes (0 and 1 of any dtype) as bits, 8 to a byte: ``[ceil(n / 8)]`` uint8."""
    flat = spikes.reshape(-1).to(torch.uint8)
    padded = nn.functional.pad(flat, (0, -flat.numel() % 8))
    return (padded.view(-1, 8) * _BIT_WEIGHTS.to(spikes.device)).sum(1, dtype=torch.uint8)


def unpack_spikes(packed: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """The inverse of :func:`pack_spikes`: a tensor of ``shape`` and ``dtype``."""
    bits = packed.unsqueeze(1).bitwise_and(_BIT_WEIGHTS.to(packed.device)).ne(0)
    return bits.view(-1)[: shape.numel()].view(shape).to(dtype)


def pack_input(x: torch.Tensor, levels: "int | None") -> torch.Tensor:
    """What a segment keeps of its input: spikes bit-packed (``levels`` 1), pooled spike counts
    ``k / levels`` as k, two to a byte up to 15 levels (2x2 pooling: 4 bits a pooled value, as
    many as its four spikes), else a byte each; any other input (``levels`` None) as it is."""
    if levels is None:
        return x.detach()
    if levels == 1:
        return pack_spikes(x)
    counts = torch.round(x.reshape(-1) * levels).to(torch.uint8)
    if levels > 15:
        return counts
    pairs = nn.functional.pad(counts, (0, counts.numel() % 2)).view(-1, 2)
    return pairs[:, 0] | pairs[:, 1] << 4


def unpack_input(kept: torch.Tensor, levels: "int | None", shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """The input again from :func:`pack_input`, bit for bit (k / levels is exact for a power of two)."""
    if levels is None:
        return kept
    if levels == 1:
        return unpack_spikes(kept, shape, dtype)
    counts = kept if levels > 15 else torch.stack((kept & 15, kept >> 4), dim=1).view(-1)
    return (counts[: shape.numel()].to(dtype) / levels).view(shape)


@dataclass(frozen=True)
class Segment:
    """Layers run one after the other on a ``[T, B, ...]`` input (``run`` when the segment is
    not a plain chain). ``input_levels``: the input holds k / input_levels for integers k in
    [0, input_levels] (1: spikes; 4: 2x2-pooled spikes; at most 128, a power of two) or None
    (any value: the stem's input)."""

    modules: tuple[nn.Module, ...]
    input_levels: "int | None" = 1
    run: "Callable[[torch.Tensor], torch.Tensor] | None" = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.run is not None:
            return self.run(x)
        for module in self.modules:
            x = module(x)
        return x

    @property
    def lifs(self) -> list[LIF]:
        return [lif for module in self.modules for lif in spiking_layers(module)]

    @property
    def parameters(self) -> list[nn.Parameter]:
        unique = {id(p): p for module in self.modules for p in module.parameters() if p.requires_grad}
        return list(unique.values())


def _pool_area(layer: nn.Module) -> "int | None":
    """The area of a spike-count pooling (:class:`~qsnn_lightning.snn.layers.AvgPool` in a
    MultiStep, the backbones' pooling), None for any other layer."""
    pool = layer[0] if isinstance(layer, MultiStep) and len(layer) == 1 else layer
    return pool.area if isinstance(pool, AvgPool) else None


def chain_segments(layers: nn.Sequential, input_levels: "int | None" = 1) -> list[Segment]:
    """``layers`` (whose input holds ``input_levels``) cut into ``conv-BN-LIF [pool]`` blocks:
    a block ends after a LIF layer and the poolings right after it, so the next block's input
    is spikes or pooled spike counts (a count fits a byte while the pooled area is at most 128,
    a power of two so that k / area is exact)."""
    segments, current, levels = [], [], input_levels
    for layer in layers:
        if _pool_area(layer) is None and _ends_block(current):
            segments.append(Segment(tuple(current), levels))
            current, levels = [], levels_after(current)
        current.append(layer)
    if current:
        segments.append(Segment(tuple(current), levels))
    return segments


def leading_pools(layers: nn.Sequential) -> list[nn.Module]:
    """The poolings ``layers`` start with (they belong with the block before them)."""
    pools = []
    for layer in layers:
        if _pool_area(layer) is None:
            break
        pools.append(layer)
    return pools


def levels_after(layers: "list[nn.Module] | tuple[nn.Module, ...]") -> "int | None":
    """``input_levels`` of what layers ending in a LIF layer and poolings put out."""
    levels = 1
    for layer in reversed(layers):
        if isinstance(layer, LIF):
            break
        levels *= _pool_area(layer)
    return levels if levels <= 128 and levels & (levels - 1) == 0 else None


def _ends_block(layers: list[nn.Module]) -> bool:
    """Whether ``layers`` end with a LIF layer and nothing but poolings after it."""
    for layer in reversed(layers):
        if isinstance(layer, LIF):
            return True
        if _pool_area(layer) is None:
            return False
    return False


def lean_blockers(model: nn.Module) -> list[str]:
    """Names of the leaf layers of ``model`` the lean path cannot recompute exactly."""
    return [
        f"{name} ({type(module).__name__})" for name, module in model.named_modules()
        if not any(True for _ in module.children()) and not isinstance(module, RECOMPUTABLE)
    ]


def run_segments(segments: list[Segment], x: torch.Tensor, lean: bool) -> torch.Tensor:
    """``x`` through every segment, recomputing each in the backward pass when ``lean``."""
    for segment in segments:
        if not lean:
            x = segment(x)
            continue
        x, *rates = _Recomputed.apply(segment, x, *segment.parameters)
        for lif, rate in zip(segment.lifs, rates):
            lif.firing_rate = rate  # f_l of Eq. 15 with its gradient (the forward pass ran without autograd)
    return x


@contextmanager
def _recomputing(segment: Segment) -> Iterator[None]:
    """Run ``segment`` again without side effects: its LIF layers start from a cleared state and
    get back the forward pass's state and firing rates, its buffers (BatchNorm's running
    statistics, running alpha_u) their values."""
    buffers = [(buffer, buffer.clone()) for module in segment.modules for buffer in module.buffers()]
    lifs = segment.lifs
    kept = [(lif.v, lif.firing_rate) for lif in lifs]
    for lif in lifs:
        lif.reset()
    try:
        yield
    finally:
        for lif, (v, rate) in zip(lifs, kept):
            lif.v, lif.firing_rate = v, rate
        with torch.no_grad():
            for buffer, value in buffers:
                buffer.copy_(value)


class _Recomputed(torch.autograd.Function):
    """``(y, *f_l) = _Recomputed.apply(segment, x, *parameters)``: the segment's output and the
    firing rates of its LIF layers; keeps ``x`` (bit-packed when it holds spikes) and recomputes
    the segment in the backward pass (module docstring)."""

    @staticmethod
    def forward(ctx, segment: Segment, x: torch.Tensor, *parameters):
        out = segment(x)
        rates = [lif.firing_rate for lif in segment.lifs]
        device = x.device.type
        ctx.segment, ctx.shape, ctx.dtype = segment, x.shape, x.dtype
        ctx.autocast = (device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device))
        ctx.save_for_backward(pack_input(x, segment.input_levels))
        ctx.set_materialize_grads(False)
        return (out, *rates)

    @staticmethod
    def backward(ctx, grad_out, *grad_rates):
        segment = ctx.segment
        (saved,) = ctx.saved_tensors
        x = unpack_input(saved, segment.input_levels, ctx.shape, ctx.dtype)
        x.requires_grad_(ctx.needs_input_grad[1])
        wanted = [p for p, needed in zip(segment.parameters, ctx.needs_input_grad[2:]) if needed]
        inputs = ([x] if x.requires_grad else []) + wanted
        device, dtype, enabled = ctx.autocast
        with _recomputing(segment):  # until the gradients are taken: BatchNorm's backward reads the running statistics' versions
            with torch.enable_grad(), torch.autocast(device, dtype, enabled=enabled):
                out = segment(x)
                rates = [lif.firing_rate for lif in segment.lifs]
            pairs = [(y, g) for y, g in zip((out, *rates), (grad_out, *grad_rates)) if g is not None]
            grads = iter([None] * len(inputs))
            if pairs and inputs:
                outputs, grad_outputs = zip(*pairs)
                grads = iter(torch.autograd.grad(outputs, inputs, grad_outputs, allow_unused=True))
        grad_x = next(grads) if x.requires_grad else None
        return (None, grad_x, *(next(grads) if needed else None for needed in ctx.needs_input_grad[2:]))
