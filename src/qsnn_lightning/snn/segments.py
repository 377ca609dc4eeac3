"""What the lean path (snn/lean.py) cuts a backbone into, and what it keeps of each piece.

A :class:`Segment` is a chain of layers on a ``[T, B, ...]`` input: the stem with its LIF, a
``conv-BN-LIF [pool]`` block, a residual block. Between the passes the lean path keeps a
segment's input in its true width: spikes 1 bit each, 2x2-pooled spike counts k / 4 as 4-bit
codes, the stem's input as it is; and a block's stored membranes (Eq. 8-10) as their k-bit levels.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .layers import AvgPool, MultiStep
from .neurons import LIF, spiking_layers

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


def pack_codes(codes: torch.Tensor, largest: int) -> torch.Tensor:
    """Small non-negative integers (uint8, at most ``largest``) two to a byte when ``largest``
    fits 4 bits, else as they are: ``[ceil(n / 2)]`` or ``[n]`` uint8."""
    codes = codes.reshape(-1)
    if largest > 15:
        return codes
    pairs = nn.functional.pad(codes, (0, codes.numel() % 2)).view(-1, 2)
    return pairs[:, 0] | pairs[:, 1] << 4


def unpack_codes(packed: torch.Tensor, largest: int, numel: int) -> torch.Tensor:
    """The first ``numel`` codes of :func:`pack_codes` (uint8, flat)."""
    if largest > 15:
        return packed[:numel]
    return torch.stack((packed & 15, packed >> 4), dim=1).view(-1)[:numel]


def unpack_rows(kept: torch.Tensor, levels: int, row_numel: int, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows ``start:stop`` (each ``row_numel`` values, a multiple of 8) of the flat input kept by
    :func:`pack_input` with ``levels`` 1 or more, without unpacking the rest: a flat float tensor."""
    per_byte = 8 if levels == 1 else 1 if levels > 15 else 2
    part = kept[start * row_numel // per_byte: stop * row_numel // per_byte]
    return unpack_input(part, levels, torch.Size(((stop - start) * row_numel,)), dtype)


def pack_input(x: torch.Tensor, levels: "int | None") -> torch.Tensor:
    """What a segment keeps of its input: spikes bit-packed (``levels`` 1), pooled spike counts
    ``k / levels`` as the codes k (:func:`pack_codes`: 4 bits for 2x2 pooling, as many as the
    four spikes), any other input (``levels`` None) as it is."""
    if levels is None:
        return x.detach()
    if levels == 1:
        return pack_spikes(x)
    return pack_codes(torch.round(x * levels).to(torch.uint8), levels)


def unpack_input(kept: torch.Tensor, levels: "int | None", shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """The input again from :func:`pack_input`, bit for bit (k / levels is exact for a power of two)."""
    if levels is None:
        return kept
    if levels == 1:
        return unpack_spikes(kept, shape, dtype)
    return (unpack_codes(kept, levels, shape.numel()).to(dtype) / levels).view(shape)


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
        """The LIF layers of the segment's modules, in order."""
        return [lif for module in self.modules for lif in spiking_layers(module)]

    @property
    def parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the segment's modules, each once, in order."""
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
    """``input_levels`` of what layers ending in a LIF layer and poolings put out; None where
    they end in anything else (a peer library's neuron, a ReLU): its values are not counts."""
    levels = 1
    for layer in reversed(layers):
        if isinstance(layer, LIF):
            break
        area = _pool_area(layer)
        if area is None:
            return None
        levels *= area
    return levels if levels <= 128 and levels & (levels - 1) == 0 else None


def _ends_block(layers: list[nn.Module]) -> bool:
    """Whether ``layers`` end with a LIF layer and nothing but poolings after it."""
    for layer in reversed(layers):
        if isinstance(layer, LIF):
            return True
        if _pool_area(layer) is None:
            return False
    return False


