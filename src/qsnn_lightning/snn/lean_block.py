"""The lean path's chains of ``conv-BN-LIF [pool]`` blocks, worked through time in chunks of steps.

Recomputed with autograd (snn/lean.py), a block holds its whole graph over all T steps in the
backward pass: conv output, membranes, spikes and their gradients, each T x B x C x H x W floats
(VGGSNN's conv 64->128 at 128x128, batch 64: 8.6 GB each). A :class:`ChunkedChain` runs
consecutive blocks (the VGG backbones; the stem on event frames) as one autograd node that holds
chunk-sized tensors and, per block, one full-size gradient; between blocks it holds their
outputs packed (snn/segments.py), never as floats. BatchNorm keeps the statistics of the whole
batch and all T steps (the paper's), and forward values are the full path's, bit for bit (the
conv gives every sample the same values in a chunk as in the whole batch, and layers.BatchNorm
normalizes element by element). Per block::

    forward:   y = conv(x) chunk by chunk; mean, var of y over all steps (running statistics once)
               per chunk: z = BN(y), the current of Eq. 1; LIF from the carried state (Eq. 1-3,
               8-10) -> spikes -> pooled -> packed; keep mean, var, every step's stored
               membrane as its k-bit level (Eq. 8-9) and the T scales alpha_u
    backward, twice over the chunks, last first:
               y, z again; u[t] = tau v[t-1] + z[t] from the kept level of v[t-1] (Eq. 1)
               dL/dz = fused_lif.backward_steps (dL/dv carried from the chunk after)
      first:   sum dL/dz, sum dL/dz (y - mean) over every step
      second:  dL/dy = (dL/dz - (y - mean) k - sum dL/dz / M) invstd gamma,
               k = sum dL/dz (y - mean) invstd^2 / M                    aten's BatchNorm backward
               dL/dx, dL/dW += conv backward

BatchNorm's backward needs sums over every step before any dL/dy, so the second pass computes
dL/dz again rather than keep it (or y) at full size: three convs per block instead of the full
path's two in the backward pass, and chunk-sized tensors only. The chain's last blocks keep y
from the forward pass instead (:func:`_kept_outputs`) and run no conv again: their outputs are
the smallest and their convs the costliest per output value (C_in x 9 multiply-adds), and what
they keep together stays within the largest y, which the forward pass holds whole anyway. On
VGGSNN the last four blocks: half of the multiply-adds, so that the lean step runs
1 + 2 (1/2 x 2) + 2 = 4 convs per block on average against the full path's 3.

Gradients differ from the full path's only in the order of these sums (measured on VGGSNN: at most 1.6e-4
of a parameter's largest gradient, benchmarks/memopt_compare.py).
"""

from dataclasses import dataclass

import torch

from . import fused_lif
from .layers import AvgPool, BatchNorm, MultiStep, QConv2d, batch_statistics, inverse_std, normalize
from .neurons import LIF
from .quant import FullPrecisionWeight
from .segments import Segment, levels_after, pack_codes, pack_input, unpack_codes, unpack_rows

CHUNK_BYTES = 64 * 2**20  # a chunk holds whole steps, about this many bytes per float tensor (at least one step)
KEEP_Y_SHARE = 1.0  # the last blocks keep their conv outputs up to this share of the largest one (_kept_outputs)
CHANNELS = (1, -1, 1, 1)


def chunkable(segment: Segment) -> bool:
    """Whether ``segment`` is ``MultiStep(QConv2d, BatchNorm)``, a fused LIF and poolings, with
    a multiple of 8 channels (so that a chunk's spikes fill whole bytes)."""
    if segment.run is not None or len(segment.modules) < 2:
        return False
    conv_bn, lif, *pools = segment.modules
    return (
        isinstance(conv_bn, MultiStep) and len(conv_bn) == 2 and isinstance(conv_bn[0], QConv2d)
        and conv_bn[0].out_channels % 8 == 0 and type(conv_bn[1]) is BatchNorm and conv_bn[1].affine
        and conv_bn[1].track_running_stats and isinstance(lif, LIF) and lif.spec.neuron == "fused"
        and not lif.spec.quantize_before_spike
        and all(isinstance(pool, MultiStep) and isinstance(pool[0], AvgPool) for pool in pools)
    )


def uses_chunks(segment: Segment, x: torch.Tensor) -> bool:
    """Whether the lean path runs ``segment`` on ``x`` in a :class:`ChunkedChain`: a chunkable
    block on float32 input (autocast's reduced precision goes through autograd's recomputation)."""
    return chunkable(segment) and x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type)


@dataclass
class _Source:
    """A block's input: the chain's float input ``[T, B, ...]`` (``kept`` None) or the previous
    block's output as :func:`~qsnn_lightning.snn.segments.pack_input` kept it."""

    shape: torch.Size  # [T, B, C, H, W]
    levels: "int | None"
    kept: "torch.Tensor | None" = None
    values: "torch.Tensor | None" = None

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Steps ``start:stop`` as ``[(stop - start) B, C, H, W]`` floats."""
        batch, step = self.shape[1], self.shape[2:]
        if self.kept is None:
            return self.values[start:stop].flatten(0, 1)
        flat = unpack_rows(self.kept, self.levels, batch * step.numel(), start, stop, torch.float32)
        return flat.view(-1, *step)


@dataclass
class _Block:
    """What the forward pass of one block keeps for its backward pass."""

    segment: Segment
    source: _Source
    stats: tuple
    mean: torch.Tensor
    var: torch.Tensor
    scales: "torch.Tensor | None"  # alpha_u of every step
    membranes: list  # the kept stored membrane of every step but the last
    chunks: list  # (start, stop) of every chunk of steps
    step_shape: torch.Size  # the conv output of one step and sample: [C, H, W]
    out_shape: torch.Size  # the block's output (after the poolings), [T, B, ...]
    y: "torch.Tensor | None"  # the conv output of every step, [T B, C, H, W], where kept (None: recomputed)


def _parts(segment: Segment):
    (conv, bn), lif, *pools = segment.modules
    return conv, bn, lif, pools


def _quantized_weight(conv: QConv2d, stats=None):
    """``(Q(W), stats)`` of the conv's weight (recomputed from ``stats`` when given)."""
    if isinstance(conv.weight_quant, FullPrecisionWeight):
        return conv.weight, ()
    if stats is None:
        return conv.weight_quant.quantize(conv.weight)
    return conv.weight_quant.requantize(conv.weight, stats), stats


def _chunks(steps: int, batch: int, step_shape: torch.Size) -> list[tuple[int, int]]:
    """``(start, stop)`` of the chunks of whole steps, each about CHUNK_BYTES a float tensor."""
    chunk = max(1, CHUNK_BYTES // max(batch * step_shape.numel() * 4, 1))
    return [(start, min(start + chunk, steps)) for start in range(0, steps, chunk)]


def _conv_all_steps(conv: QConv2d, quantized, source: _Source, chunks) -> torch.Tensor:
    """``conv(x)`` of every step, ``[T B, C, H, W]``: the chain's own input in one call (as the
    full path), packed inputs chunk by chunk into one tensor."""
    if source.kept is None:
        return conv.op(source.values.flatten(0, 1), quantized, conv.bias)
    first = conv.op(source.rows(*chunks[0]), quantized, conv.bias)
    y = first.new_empty((source.shape[0] * source.shape[1], *first.shape[1:]))
    rows = len(first)
    y[:rows] = first
    for start, stop in chunks[1:]:
        y[start * source.shape[1]: stop * source.shape[1]] = conv.op(source.rows(start, stop), quantized, conv.bias)
    return y


def _keep_membranes(stored: torch.Tensor, scales: "torch.Tensor | None", levels: "int | None") -> torch.Tensor:
    """One step's stored membrane kept as its k-bit level, as the code ``level + n``
    (:func:`~qsnn_lightning.snn.segments.pack_codes`); full-precision membranes as they are."""
    if levels is None:
        return stored.clone()
    codes = torch.round(stored * levels / scales) + levels
    return pack_codes(codes.to(torch.uint8), 2 * levels)


def _membrane(kept: torch.Tensor, numel: int, scale: "torch.Tensor | None", levels: "int | None") -> torch.Tensor:
    """A stored membrane again from :func:`_keep_membranes`, bit for bit: alpha_u / n * level."""
    if levels is None:
        return kept
    return fused_lif.stored_value(unpack_codes(kept, 2 * levels, numel).to(torch.float32) - levels, scale, levels)


def _kept_outputs(segments: tuple[Segment, ...], step_input: torch.Size) -> list[bool]:
    """Which blocks keep their conv output ``y`` for the backward pass: the chain's last blocks,
    as long as what they keep together stays within KEEP_Y_SHARE of the chain's largest ``y``
    (the forward pass holds that one whole anyway). The last blocks have the most multiply-adds
    per output (Cin 3 x 3), so each byte kept saves the most of the two recomputations.

        keep y_l  iff  sum_{m >= l} |y_m| <= KEEP_Y_SHARE max_m |y_m|
    """
    sizes, shape = [], torch.Size((1, *step_input))
    for segment in segments:  # the shapes of one sample and step, on the meta device
        conv, _, _, pools = _parts(segment)
        y = conv.op(torch.empty(shape, device="meta"), conv.weight.to("meta"), None)
        sizes.append(y.numel())
        for pool in pools:
            y = pool[0].pool(y)
        shape = y.shape
    budget, kept, keep = KEEP_Y_SHARE * max(sizes), 0, []
    for size in reversed(sizes):
        kept += size
        keep.append(kept <= budget)
    return keep[::-1]


def _forward_block(segment: Segment, source: _Source, pack_levels: "int | None", keep_y: bool):
    """One block's forward pass: ``(output, f_l, kept)``, the output packed with ``pack_levels``
    for the next block, or floats (``pack_levels`` None: the chain's last block); ``keep_y``:
    keep the conv output for the backward pass instead of recomputing it there."""
    conv, bn, lif, pools = _parts(segment)
    steps, batch = source.shape[:2]
    quant, spec = lif.membrane_quant, lif.spec
    quantized, stats = _quantized_weight(conv)
    step_shape = conv.op(source.rows(0, 1)[:1], quantized, conv.bias).shape[1:]
    chunks = _chunks(steps, batch, step_shape)
    y = _conv_all_steps(conv, quantized, source, chunks)
    mean, var = batch_statistics(bn, y)
    levels = quant.levels if quant.enabled else None
    kernels = fused_lif.kernels(spec.compile)
    v, outputs, spiked, membranes, scales = torch.zeros_like(y[:batch]).view(-1), [], 0, [], []
    for start, stop in chunks:
        z = normalize(bn, y[start * batch: stop * batch], mean, var)
        spikes, _, v, step_scales, stored = kernels.forward_steps(
            z.view(stop - start, -1), v, spec.tau, spec.theta, levels, *quant.scale_rule(), True, quant.squash, False,
        )
        del z
        scales.append(step_scales)
        membranes += [_keep_membranes(stored[t], None if levels is None else step_scales[t], levels)
                      for t in range(stop - start) if start + t < steps - 1]  # the last step's state is never read
        spiked = spiked + spikes.sum(dtype=torch.float64)  # exact, on the device
        pooled = spikes.view(stop - start, batch, *step_shape)
        for pool in pools:
            pooled = pool(pooled)
        outputs.append(pooled if pack_levels is None else pack_input(pooled, pack_levels))
        out_shape = torch.Size((steps, batch, *pooled.shape[2:]))
        del spikes, stored, pooled  # before the next chunk's are made
    if not keep_y:
        del y
    scales = torch.cat(scales) if levels is not None else None
    if quant.enabled and quant.training:
        quant.track(scales)
    rate = spiked.to(torch.float32) / (steps * batch * step_shape.numel())  # f_l of Eq. 15, as out.mean()
    lif.v, lif.firing_rate = None, rate  # no state to carry: every training forward starts cleared
    kept = _Block(segment, source, stats, mean, var, scales, membranes, chunks, step_shape, out_shape, y if keep_y else None)
    return torch.cat(outputs), rate, kept


def _spike_grad(block: _Block, grad_out, grad_rate, start: int, stop: int) -> torch.Tensor:
    """dL/ds of steps ``start:stop`` ``[(stop - start) B, C, H, W]``: through the poolings from
    dL/d(output), plus dL/df_l / (number of spikes) (f_l is their mean)."""
    _, _, _, pools = _parts(block.segment)
    batch = block.source.shape[1]
    rows = (stop - start) * batch
    if grad_out is None:
        grad = torch.zeros((rows, *block.step_shape), device=block.mean.device)
    else:
        grad = grad_out[start * batch: stop * batch]
        shapes, shape = [], torch.Size((rows, *block.step_shape))
        for pool in pools:
            shapes.append(shape)
            shape = pool[0].pool(torch.empty(shape, device="meta")).shape
        for pool, shape in zip(reversed(pools), reversed(shapes)):
            grad = pool[0].input_grad(grad, shape)
    if grad_rate is not None:
        grad = grad + grad_rate / (block.source.shape[0] * batch * block.step_shape.numel())
    return grad


def _recompute_chunk(block: _Block, start: int, stop: int, grad_out, grad_rate, grad_v, quantized, alpha):
    """Steps ``start:stop`` of a block again: ``(y, dL/dz, dL/dv[start - 1], dL/dalpha_u)``, the
    conv output and the gradient of the BatchNorm output (Eq. 1's current) from the LIF's
    backward pass; ``grad_v``: dL/dv of the chunk's last stored membrane, from the chunk after."""
    conv, bn, lif, _ = _parts(block.segment)
    quant, spec = lif.membrane_quant, lif.spec
    levels = quant.levels if quant.enabled else None
    kernels = fused_lif.kernels(spec.compile)
    batch = block.source.shape[1]
    numel = batch * block.step_shape.numel()
    if block.y is None:
        y = conv.op(block.source.rows(start, stop), quantized, conv.bias)
    else:
        y = block.y[start * batch: stop * batch]  # a view of the kept conv output (the second pass overwrites it)
    z = normalize(bn, y, block.mean, block.var)
    v = (torch.zeros(numel, device=y.device) if start == 0 else
         _membrane(block.membranes[start - 1], numel, block.scales[start - 1] if levels else None, levels))
    _, charged, _, _, _ = kernels.forward_steps(
        z.view(stop - start, -1), v, spec.tau, spec.theta, levels, *quant.scale_rule(), False, quant.squash, True,
    )
    del z
    grad_s = _spike_grad(block, grad_out, grad_rate, start, stop)
    grads, grad_alpha, grad_v = kernels.backward_steps(
        charged, grad_s.view(stop - start, -1), spec.tau, spec.theta, spec.beta, quant.squash,
        None if alpha is None else alpha.detach(), levels or 1, grad_v,
    )
    return y, grads.view_as(y), grad_v, grad_alpha


def _backward_block(block: _Block, grad_out, grad_rate, input_grad: bool):
    """One block's backward pass (module docstring): ``(dL/dx as [T B, ...] or None, {id(parameter): gradient})``;
    ``grad_out`` is dL/d(output) as ``[T B, ...]`` floats (None: unused). Both passes run the
    chunks last first and recompute dL/dz (the second instead of keeping a full-size tensor)."""
    conv, bn, lif, _ = _parts(block.segment)
    quant = lif.membrane_quant
    steps, batch = block.source.shape[:2]
    with torch.no_grad():
        quantized, _ = _quantized_weight(conv, block.stats)
    with torch.enable_grad():
        alpha = quant.learned_alpha(torch.empty((batch, *block.step_shape), device="meta"))
    chunks = block.chunks[::-1]
    mean = block.mean.view(CHANNELS)
    sums = torch.zeros(2, block.step_shape[0], dtype=torch.float64, device=mean.device)
    grad_v, grad_alpha = None, None
    for start, stop in chunks:
        y, grad_z, grad_v, step_alpha = _recompute_chunk(block, start, stop, grad_out, grad_rate, grad_v, quantized, alpha)
        grad_alpha = step_alpha if grad_alpha is None else grad_alpha + step_alpha
        sums[0] += grad_z.sum(dim=(0, 2, 3), dtype=torch.float64)
        sums[1] += (grad_z * (y - mean if block.y is not None else y.sub_(mean))).sum(dim=(0, 2, 3), dtype=torch.float64)
        del y, grad_z
    count = steps * batch * block.step_shape[1:].numel()
    invstd = inverse_std(block.var, bn.eps)
    grad_sum, dot = sums.to(torch.float32)
    grad_mean, k = (grad_sum / count).view(CHANNELS), (dot * invstd**2 / count).view(CHANNELS)
    scale = (invstd * bn.weight.detach()).view(CHANNELS)
    grad_x = torch.empty((steps * batch, *block.source.shape[2:]), device=mean.device) if input_grad else None
    grad_quantized, grad_v = torch.zeros_like(conv.weight), None
    for start, stop in chunks:
        y, grad_z, grad_v, _ = _recompute_chunk(block, start, stop, grad_out, grad_rate, grad_v, quantized, alpha)
        # aten's batch_norm_backward in training, in place: dL/dy = (dL/dz - (y - mean) k - mean of dL/dz) invstd gamma
        grad_y = grad_z.sub_(y.sub_(mean).mul_(k)).sub_(grad_mean).mul_(scale)
        del y
        x = block.source.rows(start, stop)
        if grad_x is not None:
            grad_x[start * batch: stop * batch] = conv.input_grad(grad_y, x, quantized)
        grad_quantized += conv.weight_grads(grad_y, x, conv.weight, False)[0]
        del grad_y, grad_z, x  # before the next chunk's are made
    grad_weight = conv.weight_quant.vjp(conv.weight, grad_quantized, block.stats) if block.stats else grad_quantized
    grads = {id(conv.weight): grad_weight, id(bn.weight): dot * invstd, id(bn.bias): grad_sum}
    if alpha is not None:
        grads[id(quant.alpha)] = torch.autograd.grad(alpha, quant.alpha, grad_alpha)[0]
    return grad_x, grads


class ChunkedChain(torch.autograd.Function):
    """``(y, *f_l) = ChunkedChain.apply(segments, x, *parameters)``: the output of the last of
    consecutive :func:`chunkable` ``segments`` on ``x`` and the firing rate of every block
    (module docstring); ``parameters``: every segment's, in order."""

    @staticmethod
    def forward(ctx, segments: tuple[Segment, ...], x: torch.Tensor, *parameters):
        """``(y, *f_l)``: each block chunk of steps by chunk (module docstring), its input the previous block's packed
        output; keeps the chain's input (packed when it holds spikes or counts) and each block's statistics, membrane
        levels and scales."""
        source, blocks, rates = _Source(x.shape, segments[0].input_levels, values=x), [], []
        keep_y = _kept_outputs(segments, x.shape[2:])
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            levels = None if last else levels_after(segment.modules)
            out, rate, block = _forward_block(segment, source, levels, keep_y[index])
            blocks.append(block)
            rates.append(rate)
            if not last:
                source = _Source(block.out_shape, levels, kept=out)
        first = blocks[0].source
        ctx.blocks, ctx.parameters = blocks, parameters
        ctx.save_for_backward(pack_input(x, first.levels))
        ctx.set_materialize_grads(False)
        return (out, *rates)

    @staticmethod
    def backward(ctx, grad_out, *grad_rates):
        """``(None, dL/dx, *dL/dparameters)``: the blocks' backward passes, last block first, each freeing what its block
        kept once done."""
        blocks = ctx.blocks
        (kept,) = ctx.saved_tensors
        first = blocks[0].source
        packed = first.levels is not None
        blocks[0].source = _Source(first.shape, first.levels, kept=kept if packed else None, values=None if packed else kept)
        grads, carried = {}, [None if grad_out is None else grad_out.flatten(0, 1)]
        del grad_out
        ctx.blocks = None  # each block's kept state (membrane levels, packed input) goes once its backward is done
        for index in reversed(range(len(blocks))):
            needs_input = index > 0 or ctx.needs_input_grad[1]
            grad, block_grads = _backward_block(blocks.pop(), carried.pop(), grad_rates[index], needs_input)
            carried.append(grad)  # the only reference: freed once the block before has read it
            del grad
            grads.update(block_grads)
        grad_x = carried.pop()
        grad_x = None if grad_x is None else grad_x.view(first.shape)
        return (None, grad_x, *(grads.get(id(p)) for p in ctx.parameters))
