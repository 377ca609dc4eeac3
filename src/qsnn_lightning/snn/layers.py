"""Layers with quantized weights, time folding, and the factory the backbones build from.

``QConv2d`` / ``QLinear`` keep latent fp32 weights and read them through their weight quantizer
(``layer.weight_quant``, which carries ``bits`` and the scales). Stateless layers run on all T
steps at once by folding time into the batch (``MultiStep``), so each weight is quantized once
per forward pass, not once per time step. A layer with quantized weights keeps its input and
its latent weight for the backward pass, not the quantized weight: that is recomputed there
(:class:`QuantizedWeightOp`). A layer built with ``binary_input=True`` (its input is a spike
map, as the backbones declare) keeps that input as one byte per element (bool) instead of four.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from .neurons import LIF
from .precision import Precision
from .quant import FULL_PRECISION_BITS, FullPrecisionWeight, InputQuant
from .spec import ModelSpec


class QuantizedWeightOp(torch.autograd.Function):
    """``layer.op(x, Q(w), bias)`` that saves ``x``, ``w`` and the quantizer's small statistics
    (per-layer or per-channel scales) and recomputes ``Q(w)`` from them in the backward pass.
    Values and gradients are those of autograd through ``layer.weight_quant`` and the op; only
    what is held between the passes differs: ``Q(w)`` and the quantizer's intermediate tensors
    live for one layer at a time instead of all at once, and a binary input
    (``layer.binary_input``) is kept as bool, one byte per element. The backward pass computes
    the input gradient with ``Q(w)`` (recomputed only when that gradient is needed), frees it,
    then the weight gradient, so ``Q(w)`` and the weight gradient are never alive together."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        """``layer.op(x, Q(w), bias)``, ``Q(w)`` computed without autograd; saves ``x`` (bool when binary), ``w`` and the
        quantizer's statistics."""
        with torch.no_grad():
            quantized, stats = layer.weight_quant.quantize(weight)
        device = x.device.type
        if torch.is_autocast_enabled(device):  # autocast's casts for conv / linear, made here for both passes
            dtype = torch.get_autocast_dtype(device)
            x, quantized, bias = x.to(dtype), quantized.to(dtype), bias.to(dtype) if bias is not None else None
        ctx.layer, ctx.input_dtype, ctx.compute_dtype = layer, x.dtype, quantized.dtype
        ctx.save_for_backward(x.to(torch.bool) if layer.binary_input else x, weight, *stats)
        with torch.autocast(device, enabled=False):
            return layer.op(x, quantized, bias)

    @staticmethod
    def backward(ctx, grad_out):
        """``(dL/dx, dL/dw, dL/dbias, None)``: dL/dx with ``Q(w)`` recomputed from the statistics, then dL/dQ(w) taken
        through the quantizer's ``vjp``."""
        x, weight, *stats = ctx.saved_tensors
        layer, quant = ctx.layer, ctx.layer.weight_quant
        if x.dtype == torch.bool:  # read as bytes: uint8 -> float converts several times faster than bool -> float
            x = x.view(torch.uint8)
        x, grad_x = x.to(ctx.input_dtype), None
        if ctx.needs_input_grad[0]:
            with torch.no_grad():
                quantized = quant.requantize(weight, stats).to(ctx.compute_dtype)
            grad_x = layer.input_grad(grad_out, x, quantized)
            del quantized  # the quantized weight and the weight gradient are never alive together
        grad_quantized, grad_bias = layer.weight_grads(grad_out, x, weight.to(ctx.compute_dtype), ctx.needs_input_grad[2])
        del x  # before the quantizer's backward: fewer buffers at once
        return grad_x, quant.vjp(weight, grad_quantized.to(weight.dtype), stats), grad_bias, None


class _QuantizedWeightLayer:
    """The forward pass shared by QConv2d and QLinear: the plain op for full-precision weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.weight_quant, FullPrecisionWeight):
            return self.op(x, self.weight, self.bias)
        return QuantizedWeightOp.apply(x, self.weight, self.bias, self)


class QConv2d(_QuantizedWeightLayer, nn.Conv2d):
    """``nn.Conv2d`` whose weight is read through ``weight_quant`` (Eq. 6 for binary layers);
    ``binary_input=True`` declares that its input holds only 0 and 1 (spikes)."""

    def __init__(self, *args, weight_quant: nn.Module | None = None, binary_input: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_quant = weight_quant if weight_quant is not None else FullPrecisionWeight()
        self.binary_input = binary_input

    def op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The convolution of ``x`` with ``weight`` and ``bias`` as given (the quantized weight, or ``self.weight`` at 32 bits)."""
        return self._conv_forward(x, weight, bias)

    def input_grad(self, grad_out, x, weight):
        """dL/dx of :meth:`op` (zero padding, as built here)."""
        return self._conv_backward(grad_out, x, weight, [True, False, False])[0]

    def weight_grads(self, grad_out, x, weight_like, needs_bias_grad):
        """(dL/dW, dL/db) of :meth:`op`; ``weight_like`` only gives the weight's shape and dtype."""
        return self._conv_backward(grad_out, x, weight_like, [False, True, self.bias is not None and needs_bias_grad])[1:]

    def _conv_backward(self, grad_out, x, weight, output_mask):
        return torch.ops.aten.convolution_backward(
            grad_out, x, weight, [self.out_channels] if self.bias is not None else None, self.stride, self.padding,
            self.dilation, False, [0] * len(self.stride), self.groups, output_mask,
        )


class QLinear(_QuantizedWeightLayer, nn.Linear):
    """``nn.Linear`` whose weight is read through ``weight_quant``."""

    def __init__(self, *args, weight_quant: nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_quant = weight_quant if weight_quant is not None else FullPrecisionWeight()
        self.binary_input = False  # the classifier reads time-averaged spikes

    def op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``x W^T + b`` with ``weight`` and ``bias`` as given (the quantized weight, or ``self.weight`` at 32 bits)."""
        return nn.functional.linear(x, weight, bias)

    def input_grad(self, grad_out, x, weight):
        """dL/dx of :meth:`op`."""
        return grad_out @ weight

    def weight_grads(self, grad_out, x, weight_like, needs_bias_grad):
        """(dL/dW, dL/db) of :meth:`op`."""
        rows = grad_out.flatten(0, -2)
        grad_bias = rows.sum(0) if self.bias is not None and needs_bias_grad else None
        return rows.t() @ x.flatten(0, -2), grad_bias


def batch_statistics(bn: nn.BatchNorm2d, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, var)`` of ``y`` over batch and space (biased var), folding them into ``bn``'s
    running statistics as ``nn.BatchNorm2d`` does in training (momentum, or the cumulative
    average when it is None; unbiased var in the running estimate)."""
    bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    return torch.batch_norm_update_stats(y, bn.running_mean, bn.running_var, momentum)


def normalize(bn: nn.BatchNorm2d, y: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``(y - mean) / sqrt(var + eps) * weight + bias`` by aten's inference kernel: element by
    element, so a slice of ``y`` gives the same values as the whole."""
    return nn.functional.batch_norm(y, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps)


class _BatchNormTraining(torch.autograd.Function):
    """BatchNorm in training: batch statistics (:func:`batch_statistics`), :func:`normalize`,
    and aten's training backward with them. Keeps ``y`` and the two statistics."""

    @staticmethod
    def forward(ctx, y, weight, bias, bn: nn.BatchNorm2d):
        mean, var = batch_statistics(bn, y)
        ctx.eps = bn.eps
        ctx.save_for_backward(y, weight, mean, inverse_std(var, bn.eps))
        return normalize(bn, y, mean, var)

    @staticmethod
    def backward(ctx, grad_out):
        y, weight, mean, invstd = ctx.saved_tensors
        grad_y, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad_out, y, weight, None, None, mean, invstd, True, ctx.eps, list(ctx.needs_input_grad[:3]),
        )
        return grad_y, grad_weight, grad_bias, None


def inverse_std(var: torch.Tensor, eps: float) -> torch.Tensor:
    """``1 / sqrt(var + eps)``."""
    return torch.sqrt(var + eps).reciprocal()


class BatchNorm(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training forward takes the statistics and normalizes in two
    separate aten calls (:func:`batch_statistics`, :func:`normalize`), so that the lean path can
    normalize time step by time step and get the very values of a pass over all steps. Eval
    mode, and inputs other than float32 (autocast), are ``nn.BatchNorm2d``'s own."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """BatchNorm of ``y``: by :class:`_BatchNormTraining` in training on float32 input (affine, with running
        statistics), otherwise by ``nn.BatchNorm2d``'s forward."""
        if not (self.training and self.track_running_stats and self.affine and y.dtype == torch.float32):
            return super().forward(y)
        return _BatchNormTraining.apply(y, self.weight, self.bias, self)


class _ShapeOnlyAvgPool(torch.autograd.Function):
    """Average pooling that keeps only its input's shape for the backward pass (the gradient of
    an average does not depend on the values averaged); values and gradients are aten's."""

    @staticmethod
    def forward(ctx, x, pool: nn.AvgPool2d):
        ctx.pool, ctx.shape = pool, x.shape
        return pool.pool(x)

    @staticmethod
    def backward(ctx, grad_out):
        return ctx.pool.input_grad(grad_out, ctx.shape), None


class AvgPool(nn.AvgPool2d):
    """``nn.AvgPool2d`` (stride = kernel) that saves nothing but a shape for the backward pass."""

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The average pooling itself: ``nn.AvgPool2d``'s forward."""
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` pooled; with autograd on, through :class:`_ShapeOnlyAvgPool`, which keeps only ``x``'s shape."""
        return _ShapeOnlyAvgPool.apply(x, self) if torch.is_grad_enabled() else self.pool(x)

    def input_grad(self, grad_out: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """dL/dx of an input of ``shape`` from dL/d(output), by aten, which reads the input's
        sizes and never its values."""
        return torch.ops.aten.avg_pool2d_backward(
            grad_out, grad_out.new_empty(()).expand(shape), _pair(self.kernel_size), _pair(self.stride),
            _pair(self.padding), self.ceil_mode, self.count_include_pad, self.divisor_override,
        )

    @property
    def area(self) -> int:
        """Inputs averaged per output: a pooled spike map holds counts / area."""
        height, width = _pair(self.kernel_size)
        return height * width


class MultiStep(nn.Sequential):
    """Run stateless modules on a ``[T, B, ...]`` sequence by folding T into the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The modules on ``x`` ``[T, B, ...]`` folded to ``[T * B, ...]``; the result unfolded to ``[T, B, ...]``."""
        steps, batch = x.shape[:2]
        return super().forward(x.flatten(0, 1)).unflatten(0, (steps, batch))


@dataclass(frozen=True)
class LayerFactory:
    """Builds the layers of a Q-SNN from its :class:`~qsnn_lightning.snn.spec.ModelSpec`, so backbones
    only describe topology.

    The spec gives the precision (``spec.bits``), the WS-DR weight standardization of binary
    layers (``spec.standardize``: ``"layer"``, ``"channel"`` or ``"none"``, Eq. 14), their sign's
    straight-through window (``spec.ste_window``) and the neuron options; ``compile``
    (``speed.compile``) compiles the fused LIF's step functions and the binary weight quantizer.
    A subclass overriding :meth:`lif` builds the same topology
    around another neuron (the throughput benchmark does so for its peers).
    """

    spec: ModelSpec = ModelSpec()
    compile: bool = False

    @property
    def precision(self) -> Precision:
        """The bit widths of ``spec.bits``."""
        return self.spec.precision

    def conv_bn(
        self, cin: int, cout: int, kernel: int, stride: int = 1, edge: bool = False, spikes_in: bool = False,
    ) -> MultiStep:
        """Bias-free conv (same padding for odd kernels) and BatchNorm over ``[T, B, C, H, W]``;
        ``spikes_in``: the conv reads a LIF layer's spikes directly (no pooling between)."""
        conv = QConv2d(
            cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False,
            weight_quant=self.precision.weight_quant(edge, self.spec.standardize, self.compile, self.spec.ste_window),
            binary_input=spikes_in,
        )
        return MultiStep(conv, BatchNorm(cout))

    def classifier(self, features: int, classes: int) -> QLinear:
        """The last layer (8-bit in a Q-SNN), with bias."""
        return QLinear(features, classes, weight_quant=self.precision.weight_quant(True, self.spec.standardize))

    def input_quant(self) -> InputQuant:
        """The input pixels at ``spec.input_bits`` (Eq. 8 on the image); unset, as checkpoints of
        earlier versions are: 8 bits in a quantized network, full precision in the 32w baseline."""
        bits = self.spec.input_bits
        if bits is None:
            bits = FULL_PRECISION_BITS if self.precision.weight_bits == FULL_PRECISION_BITS else 8
        return InputQuant(bits)

    def lif(self) -> nn.Module:
        """A LIF layer (Eq. 1-3, membrane quantization Eq. 8-10) with the spec's neuron options."""
        return LIF(self.spec.neuron_spec(self.compile))
