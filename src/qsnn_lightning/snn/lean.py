"""Memory-lean training with exact gradients (``speed.activation_memory=lean``).

A backbone is a chain of segments (the stem with its LIF; a ``conv-BN-LIF [pool]`` block; a
residual block), each a pure function of its input once its side effects are set apart. The
full path keeps, between the passes, every tensor autograd saves in every segment (VGGSNN at
2x128x128: 74.3 MB per sample and time step). The lean path keeps each segment's input alone,
in its true width (snn/segments.py: spikes 1 bit, 2x2-pooled spike counts 4 bits), and runs
the segment again in the backward pass::

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

A ``conv-BN-LIF [pool]`` block (the VGG backbones, the stem on event frames) runs as a
:class:`~qsnn_lightning.snn.lean_block.ChunkedChain` instead, with the blocks after it, working
through time in chunks of steps so that its largest tensors are chunk-sized; other segments (a
residual block, the stem of a static image, autocast) are recomputed by autograd as above.

Evaluation on the lean path (eval mode, no autograd) runs the same chains through time in
chunks too, each layer as itself: BatchNorm normalizes with its running statistics, element by
element, and every LIF carries its state from one chunk to the next, so the values are the
whole pass's while only a chunk of steps is alive (:func:`_infer_in_chunks`).

Only deterministic layers can be recomputed: :func:`lean_blockers` names any other leaf layer.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .layers import AvgPool, QConv2d, QLinear
from .lean_block import CHUNK_BYTES, ChunkedChain, uses_chunks
from .neurons import LIF
from .quant import BinaryWeight, FullPrecisionWeight, IntWeight, MembraneQuant
from .segments import Segment, pack_input, unpack_input

ACTIVATION_MEMORY_MODES = ("full", "lean")
RECOMPUTABLE = (
    QConv2d, QLinear, nn.modules.batchnorm._BatchNorm, LIF, MembraneQuant, BinaryWeight, IntWeight, FullPrecisionWeight,
    AvgPool, nn.AvgPool2d, nn.Identity,
)  # deterministic leaf layers: the same input gives the same output, with no randomness to replay
def lean_blockers(model: nn.Module) -> list[str]:
    """Names of the leaf layers of ``model`` the lean path cannot recompute exactly."""
    return [
        f"{name} ({type(module).__name__})" for name, module in model.named_modules()
        if not any(True for _ in module.children()) and not isinstance(module, RECOMPUTABLE)
    ]


def run_segments(segments: list[Segment], x: torch.Tensor, lean: bool, training: bool = True) -> torch.Tensor:
    """``x`` through every segment; with ``lean``, consecutive ``conv-BN-LIF [pool]`` blocks as one
    :class:`~qsnn_lightning.snn.lean_block.ChunkedChain` (``training``) or chunk of steps by chunk
    (evaluation, :func:`_infer_in_chunks`); other segments recomputed by autograd in training."""
    index = 0
    while index < len(segments):
        segment = segments[index]
        if not lean:
            x, index = segment(x), index + 1
            continue
        chain = []
        while index + len(chain) < len(segments) and uses_chunks(segments[index + len(chain)], x):
            chain.append(segments[index + len(chain)])
        if not training:
            x, index = (_infer_in_chunks(chain, x), index + len(chain)) if chain else (segment(x), index + 1)
            continue
        if chain:
            parameters = [p for part in chain for p in part.parameters]
            x, *rates = ChunkedChain.apply(tuple(chain), x, *parameters)
        else:
            chain = [segment]
            x, *rates = _Recomputed.apply(segment, x, *segment.parameters)
        for lif, rate in zip((lif for part in chain for lif in part.lifs), rates):
            lif.firing_rate = rate  # f_l of Eq. 15 with its gradient (the forward pass ran without autograd)
        index += len(chain)
    return x


def _infer_in_chunks(chain: list[Segment], x: torch.Tensor) -> torch.Tensor:
    """``chain`` on ``x`` (eval mode, no autograd) chunk of steps by chunk: the first step alone,
    then chunks whose widest tensor holds about CHUNK_BYTES; each LIF's firing rate (Eq. 15)
    is the mean over all steps, and level counting (count_levels) sees every step."""
    steps, outputs, widest, start, chunk = x.shape[0], [], 1, 0, 1
    lifs = [lif for part in chain for lif in part.lifs]
    spikes = [0.0] * len(lifs)
    while start < steps:
        y = x[start: start + chunk]
        for module in (module for part in chain for module in part.modules):  # chunkable: plain chains
            y = module(y)
            widest = max(widest, y[0].numel())
        for index, lif in enumerate(lifs):
            spikes[index] += lif.firing_rate * len(y)  # the chunk's mean, weighted by its steps
        outputs.append(y)
        start += len(y)
        chunk = max(1, CHUNK_BYTES // (widest * x.element_size()))
    for lif, total in zip(lifs, spikes):
        lif.firing_rate = total / steps
    return torch.cat(outputs)


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
