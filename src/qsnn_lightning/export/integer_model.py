"""Fold a trained Q-SNN (eval mode) into the integer model of docs/export.md.

The result, :class:`IntegerModel`, holds only integers (numpy int arrays and ints): the Python
reference (``reference.py``) and the generated C (``codegen.py``) both execute it, so they agree
bit for bit. Everything the exporter cannot represent is refused with :class:`ExportError`.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from ..snn.backbones.base import SpikingBackbone
from ..snn.backbones.resnet19 import BasicBlock, ResNet19
from ..snn.backbones.vgg import VGG
from ..snn.layers import MultiStep, QConv2d, QLinear
from ..snn.neurons import LIF
from ..snn.quant import BinaryWeight, IntWeight

INT8_MAX = 127
INT32_LIMIT = 2**31  # every membrane, current and constant of a time step stays below this in magnitude
MAX_FRACTION_BITS = 30
POOLED_COUNT_MAX = 4  # 2x2 average pooling of spikes keeps counts 0..4


@dataclass(frozen=True)
class MapInfo:
    """A spike or count map: shape (C, H, W), the largest value it holds, and its divisor D."""

    channels: int
    height: int
    width: int
    max_value: int  # 1 for spikes, 4 for pooled counts
    divisor: int  # the float activation is value / divisor

    @property
    def planes(self) -> int:
        """Bit planes of the map's values: 1 for spikes, 3 for pooled counts 0..4."""
        return self.max_value.bit_length()


@dataclass
class FoldedLIF:
    """The per-layer integer LIF constants (docs/export.md, "The folded LIF layer"): int32 values."""

    fraction_bits: int  # F
    tau_shift: int  # m, tau = 2^-m
    levels: int  # n = 2^(k-1) - 1
    threshold: int  # Theta
    multiplier: np.ndarray  # M_c >= 0, int64 array of int32 values [C]
    bias: np.ndarray  # B_c, int64 array of int32 values [C]
    membrane_alpha: float  # the calibrated alpha_u it was folded with (for the manifest)
    product_shift: int = 0  # S: the current is ((M_c * acc) >> S) + B_c (S > 0 only in the stem)

    @property
    def field_bits(self) -> int:
        """Bits of one neuron's stored level q (two's complement) in the packed state: 2, 4 or 8 (k
        rounded up, so that a word holds a whole number of levels)."""
        return next(bits for bits in (2, 4, 8) if 2 * self.levels < 2**bits)


@dataclass
class StemLayer:
    """The stem: 8-bit conv of the int8 input (rows with a negative BN scale negated), folded BN and LIF."""

    weight: np.ndarray  # int8 codes [Cout, Cin, k, k], rows of negative BN scale negated
    stride: int
    padding: int
    lif: FoldedLIF
    output: MapInfo


@dataclass
class ConvResidual:
    """A 1x1 binary conv + BN shortcut: its accumulator joins the main layer's membrane."""

    source: int  # map index
    negative: np.ndarray  # bool [Cout, Cin, 1, 1], True = weight -1 (after the sign fold)
    stride: int
    multiplier: np.ndarray  # int64 [Cout]


@dataclass
class IdentityResidual:
    """An identity shortcut: the current gains ``R x``, x the block input's spike at the same neuron, ``R = round(2^F / Delta)``."""

    source: int  # map index (spikes, same shape as the output)
    scale: int  # R = round(2^F / Delta)


@dataclass
class ConvLayer:
    """A binary conv of map ``source``, folded BN and LIF, with an optional shortcut into the membrane (ResNet19)."""

    source: int  # map index
    negative: np.ndarray  # bool [Cout, Cin, k, k], True = weight -1 (after the sign fold)
    stride: int
    padding: int
    lif: FoldedLIF
    output: MapInfo
    residual: "ConvResidual | IdentityResidual | None" = None


@dataclass
class PoolLayer:
    """2x2 average pooling of spike map ``source``, kept as counts 0..4 (the 1/4 is folded into the next layer)."""

    source: int
    output: MapInfo


@dataclass
class Head:
    """The 8-bit classifier on map ``source``, summed over space (``global_pool``) or flattened, on one scale s_max:

        L_j = sum over steps of (sum_i W'_ji feature_i[t] + Bfc_j)      (docs/export.md, "The classifier")
    """

    source: int
    global_pool: bool  # True: sum counts over space; False: flatten (c, y, x)
    weight: np.ndarray  # int8 [classes, features] on the common scale s_max
    bias: np.ndarray  # int64 [classes], Bfc_j
    max_steps: int = 0  # steps whose summed logits are sure to fit int32 (>= T)


@dataclass
class IntegerModel:
    """The integer model of docs/export.md: the stem, the conv and pool stages in execution order, the head;
    integers only (``input_alpha`` aside), executed by ``reference.py`` and the generated C."""

    timesteps: int
    input_shape: tuple[int, int, int]
    input_alpha: float  # the calibrated input scale: code = round(127 x / input_alpha), x = code * s_in
    stem: StemLayer
    layers: list = field(default_factory=list)  # ConvLayer | PoolLayer, in execution order
    head: Head | None = None
    num_classes: int = 0
    event_frames: bool = False  # True: the input of step t is frame t of [T, C, H, W]; False: one static image

    @property
    def frame_size(self) -> int:
        """int8 values of one step's input: C * H * W."""
        return int(np.prod(self.input_shape))

    @property
    def sample_size(self) -> int:
        """int8 values of one sample: T frames, or one static image."""
        return self.frame_size * (self.timesteps if self.event_frames else 1)

    def spiking_layers(self) -> list:
        """The layers that keep a membrane state between steps: the stem and every conv."""
        return [self.stem] + [layer for layer in self.layers if isinstance(layer, ConvLayer)]

    @property
    def input_scale(self) -> float:
        """s_in = input_alpha / 127."""
        return self.input_alpha / INT8_MAX

    def maps(self) -> list[MapInfo]:
        """Map i is written by stage i (stage 0 is the stem)."""
        return [self.stem.output] + [layer.output for layer in self.layers]


def _bn_fold(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """(kappa, b) of eval-mode BatchNorm: y = kappa * x + b."""
    kappa = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = bn.bias.detach().double() - kappa * bn.running_mean.double()
    return kappa.numpy(), bias.numpy()


def _membrane_grid(lif: LIF) -> tuple[float, int, int]:
    """(Delta, n, m) of a LIF layer; refuses what the integer LIF cannot do."""
    quant = lif.membrane_quant
    if not 2 <= quant.bits <= 8:
        raise ExportError(f"membrane bits k = {quant.bits} cannot be exported; the integer runtime needs 2 <= k <= 8")
    if quant.squash:
        raise ExportError("model.membrane_scale=tanh cannot be exported: the integer runtime stores levels of u, not of tanh(u); "
                          "train with membrane_scale max, threshold or learned")
    if not quant.calibrated:
        raise ExportError("the membrane scale alpha_u was never calibrated: export a model that has been trained")
    if lif.spec.quantize_before_spike:
        raise ExportError("the Algorithm-1 quantization order (quantize_before_spike) cannot be exported")
    shift = -math.log2(lif.spec.tau) if lif.spec.tau > 0 else math.inf
    if shift != int(shift) or shift < 1:
        raise ExportError(f"tau = {lif.spec.tau} cannot be exported: it must be a power of two 2^-m with m >= 1")
    delta = quant.inference_alpha() / quant.levels
    return delta, quant.levels, int(shift)


def _binary_signs(conv: QConv2d) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(conv.weight_quant, BinaryWeight):
        raise ExportError(
            f"hidden layers must have binary weights to export, found {conv.weight_quant.bits}-bit: export a 1w model"
        )
    signs, alpha = conv.weight_quant.integer_weights(conv.weight)
    return signs.numpy(), alpha.double().numpy()


def _fold_lif(lif: LIF, scale: np.ndarray, bias: np.ndarray, acc_bound, residual_scale=None, residual_bound=0,
              stem: bool = False) -> tuple[FoldedLIF, "np.ndarray | None"]:
    """Fold ``u = tau v + scale_c * acc + bias_c (+ residual_scale_c * acc')`` into int32 constants.

    ``acc_bound`` (per channel or one number) bounds |acc|, ``residual_bound`` bounds |acc'|. F is
    the largest number of fraction bits <= 30 for which every term of the update, summed, stays
    below 2^31 for any input: ``n 2^(F-m) + max_c(M_c A_c / 2^S + |B_c| + M'_c A'_c) + 2^(F-1)``.
    Returns the constants and the residual multipliers ``M'_c`` (None without a residual).
    """
    delta, levels, shift = _membrane_grid(lif)
    magnitude = np.abs(scale)
    # the stem: S = 32 - R with |acc| 2^R < 2^31, so the runtime takes the high word of (acc 2^R) M_c
    product_shift = 1 + math.ceil(math.log2(int(np.max(acc_bound)) + 1)) if stem else 0
    for bits in range(MAX_FRACTION_BITS, shift - 1, -1):
        unit = 2.0**bits / delta
        multiplier = np.round(magnitude * unit * 2.0**product_shift).astype(np.int64)
        folded = FoldedLIF(
            fraction_bits=bits, tau_shift=shift, levels=levels, threshold=math.ceil(lif.spec.theta * unit),
            multiplier=multiplier, bias=np.round(bias * unit).astype(np.int64), membrane_alpha=delta * levels,
            product_shift=product_shift,
        )
        residual = None if residual_scale is None else np.round(np.abs(residual_scale) * unit).astype(np.int64)
        current = ((multiplier * np.asarray(acc_bound, dtype=np.int64)) >> product_shift) + 1  # + 1: floor of < 0
        current = current + np.abs(folded.bias) + (0 if residual is None else residual * residual_bound)
        total = (levels << (bits - shift)) + int(current.max()) + (1 << (bits - 1))
        constants = [folded.threshold, int(multiplier.max()), *([] if residual is None else [int(residual.max())])]
        if total < INT32_LIMIT and max(constants) < INT32_LIMIT:
            return folded, residual
    raise ExportError("a layer's membrane range is too wide for 32-bit integers even with "
                      f"{shift} fraction bits: its BatchNorm scale or bias is extreme for its membrane scale alpha_u")


class _Folder:
    """Walks a backbone and appends integer stages."""

    def __init__(self, backbone: SpikingBackbone):
        self.backbone = backbone
        quant = backbone.input_quant
        if quant.bits != 8:
            raise ExportError(f"the input must be quantized to 8 bits to export, found {quant.bits}: "
                              "train with model.input_bits=8 (the default of 1w models)")
        if not quant.calibrated:
            raise ExportError("the input scale was never calibrated: export a model that has been trained")
        self.input_alpha = quant.inference_alpha()
        self.model: IntegerModel | None = None

    def stem(self, block: MultiStep, lif: LIF) -> None:
        conv, bn = block  # MultiStep(QConv2d, BatchNorm2d)
        if not isinstance(conv.weight_quant, IntWeight):
            raise ExportError("the first layer must have 8-bit weights to export: export a 1w model")
        codes, weight_scale = conv.weight_quant.integer_weights(conv.weight)
        kappa, bias = _bn_fold(bn)
        scale = kappa * weight_scale.double().numpy() * (self.input_alpha / INT8_MAX)
        k = conv.kernel_size[0]
        acc_bound = INT8_MAX * np.abs(codes.numpy().astype(np.int64)).reshape(len(codes), -1).sum(axis=1)
        folded, _ = _fold_lif(lif, scale, bias, acc_bound, stem=True)
        flip = np.where(scale < 0, -1, 1).reshape(-1, 1, 1, 1)
        channels, height, width = self.backbone.input_shape
        out_h = (height + 2 * conv.padding[0] - k) // conv.stride[0] + 1
        out_w = (width + 2 * conv.padding[1] - k) // conv.stride[0] + 1
        self.model = IntegerModel(
            timesteps=self.backbone.timesteps,
            input_shape=(channels, height, width),
            input_alpha=self.input_alpha,
            stem=StemLayer(
                weight=(codes.numpy() * flip).astype(np.int8), stride=conv.stride[0], padding=conv.padding[0],
                lif=folded, output=MapInfo(conv.out_channels, out_h, out_w, 1, 1),
            ),
            num_classes=self.backbone.num_classes,
        )

    @property
    def last(self) -> int:
        return len(self.model.layers)

    def map(self, index: int) -> MapInfo:
        return self.model.maps()[index]

    def conv(self, block: MultiStep, lif: LIF, source: int, shortcut: "MultiStep | nn.Identity | None" = None,
             shortcut_source: int | None = None) -> int:
        """A binary conv + BN + LIF; with a shortcut (ResNet), its input joins the membrane."""
        conv, bn = block  # MultiStep(QConv2d, BatchNorm2d)
        signs, alpha = _binary_signs(conv)
        kappa, bias = _bn_fold(bn)
        source_map = self.map(source)
        scale = kappa * alpha / source_map.divisor
        k = conv.kernel_size[0]
        acc_bound = source_map.max_value * conv.in_channels * k * k
        residual_scale, residual_bound = None, 0
        if isinstance(shortcut, MultiStep):
            res_conv, res_bn = shortcut
            res_signs, res_alpha = _binary_signs(res_conv)
            res_kappa, res_bias = _bn_fold(res_bn)
            residual_scale, residual_bound = res_kappa * res_alpha, res_conv.in_channels
            bias = bias + res_bias
        elif isinstance(shortcut, nn.Identity):
            residual_scale, residual_bound = np.ones(conv.out_channels), 1  # a spike of the block input
        folded, residual_multiplier = _fold_lif(lif, scale, bias, acc_bound, residual_scale, residual_bound)
        residual = None
        if isinstance(shortcut, MultiStep):
            residual = ConvResidual(
                source=shortcut_source, negative=(res_signs < 0) ^ (residual_scale < 0).reshape(-1, 1, 1, 1),
                stride=res_conv.stride[0], multiplier=residual_multiplier,
            )
        elif isinstance(shortcut, nn.Identity):
            residual = IdentityResidual(source=shortcut_source, scale=int(residual_multiplier[0]))
        out_h = (source_map.height + 2 * conv.padding[0] - k) // conv.stride[0] + 1
        out_w = (source_map.width + 2 * conv.padding[1] - k) // conv.stride[0] + 1
        self.model.layers.append(ConvLayer(
            source=source, negative=(signs < 0) ^ (scale < 0).reshape(-1, 1, 1, 1), stride=conv.stride[0],
            padding=conv.padding[0], lif=folded, output=MapInfo(conv.out_channels, out_h, out_w, 1, 1),
            residual=residual,
        ))
        return self.last

    def pool(self, pool: nn.AvgPool2d, source: int) -> int:
        source_map = self.map(source)
        if source_map.max_value != 1 or pool.kernel_size != 2 or pool.stride != 2 or pool.padding != 0:
            raise ExportError("only 2x2 average pooling of spike maps can be exported")
        self.model.layers.append(PoolLayer(
            source=source,
            output=MapInfo(source_map.channels, source_map.height // 2, source_map.width // 2, POOLED_COUNT_MAX,
                           POOLED_COUNT_MAX),
        ))
        return self.last

    def head(self, fc: QLinear, source: int, global_pool: bool) -> None:
        if not isinstance(fc.weight_quant, IntWeight):
            raise ExportError("the last layer must have 8-bit weights to export: export a 1w model")
        codes, row_scale = fc.weight_quant.integer_weights(fc.weight)
        row_scale = row_scale.double().numpy()
        common = float(row_scale.max())
        source_map = self.map(source)
        divisor = source_map.height * source_map.width * source_map.divisor if global_pool else source_map.divisor
        weight = np.round(codes.numpy() * (row_scale / common)[:, None]).astype(np.int8)
        bias = fc.bias.detach().double().numpy() if fc.bias is not None else np.zeros(fc.out_features)
        bias = np.round(bias * divisor / common).astype(np.int64)
        largest_feature = source_map.max_value * (source_map.height * source_map.width if global_pool else 1)
        step_bound = int(np.abs(weight.astype(np.int64)).sum(axis=1).max()) * largest_feature + int(np.abs(bias).max())
        max_steps = (INT32_LIMIT - 1) // max(step_bound, 1)
        if max_steps < self.backbone.timesteps:
            raise ExportError("the classifier's integer logits could overflow 32 bits for this model")
        head = Head(source=source, global_pool=global_pool, weight=weight, bias=bias, max_steps=max_steps)
        self.model.head = head


def _fold_vgg(backbone: VGG, folder: _Folder) -> None:
    folder.stem(backbone.stem, backbone.stem_lif)
    current, pending = 0, None
    for module in backbone.features:
        if isinstance(module, LIF):
            current = folder.conv(pending, module, current)
        elif isinstance(module, MultiStep) and isinstance(module[0], nn.AvgPool2d):
            current = folder.pool(module[0], current)
        elif isinstance(module, MultiStep):
            pending = module
        else:
            raise ExportError(f"layer {type(module).__name__} cannot be exported")
    folder.head(backbone.fc, current, global_pool=backbone.head == "gap")


def _fold_resnet(backbone: ResNet19, folder: _Folder) -> None:
    folder.stem(backbone.stem, backbone.stem_lif)
    current = 0
    for block in backbone.blocks:
        if not isinstance(block, BasicBlock):
            raise ExportError(f"block {type(block).__name__} cannot be exported")
        hidden = folder.conv(block.conv1, block.lif1, current)
        current = folder.conv(block.conv2, block.lif2, hidden, shortcut=block.shortcut, shortcut_source=current)
    folder.head(backbone.fc, current, global_pool=True)


def fold(backbone: SpikingBackbone, event_frames: bool = False) -> IntegerModel:
    """The integer model of an eval-mode backbone with 1-bit hidden and 8-bit edge weights;
    ``event_frames``: its input is T frames (one per step) rather than one static image."""
    folder = _Folder(backbone)
    if isinstance(backbone, VGG):
        _fold_vgg(backbone, folder)
    elif isinstance(backbone, ResNet19):
        _fold_resnet(backbone, folder)
    else:
        raise ExportError(f"backbone {type(backbone).__name__} cannot be exported")
    folder.model.event_frames = event_frames
    return folder.model


def quantize_input(images: torch.Tensor, model: IntegerModel) -> torch.Tensor:
    """Normalized float images -> the int8 codes ``clip(round(127 x / alpha), -127, 127)`` that the
    model's input quantizer computes (the same float32 operations, so the same codes)."""
    alpha = torch.tensor(model.input_alpha, dtype=torch.float32)
    return torch.round(INT8_MAX * images.float() / alpha).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
