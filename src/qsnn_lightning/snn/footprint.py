"""Memory footprint and model size as the paper's Table 2 and Figure 3 count them.

    model bits      = sum over weights of (count x their bits)   (1 for binary hidden layers, 8 for
                      the first and last layers, 32 in the 32w baseline; BatchNorm and biases at 32)
    footprint bytes = model bits / 8 + batch x max_l(neurons_l) x k / 8

``max_l(neurons_l)`` is the largest single spiking layer's neuron count per sample: processing
layer by layer keeps one layer's membranes alive. Megabytes are 10^6 bytes. Every count is
read from a built model, never from constants.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .backbones import build_model
from .neurons import spiking_layers
from .precision import Precision
from .quant import FULL_PRECISION_BITS
from .spec import ModelSpec

BYTES_PER_MB = 1e6
BASELINE = Precision(FULL_PRECISION_BITS, FULL_PRECISION_BITS)


def model_bits(model: nn.Module) -> int:
    """Bits to store the parameters: quantized weights at their quantizer's bits, the rest at 32."""
    total = 0
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            quantizer = getattr(module, "weight_quant", None)
            bits = quantizer.bits if name == "weight" and quantizer is not None else FULL_PRECISION_BITS
            total += parameter.numel() * bits
    return total


@torch.no_grad()
def spiking_layer_sizes(model: nn.Module, input_shape: tuple[int, int, int]) -> list[int]:
    """Neurons per sample of every spiking layer, measured by a forward pass of one sample."""
    sizes: list[int] = []
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out: sizes.append(out[0, 0].numel()))
        for layer in spiking_layers(model)
    ]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return sizes


@dataclass(frozen=True)
class Footprint:
    """One entry of Table 2: footprint (MB) and its reduction (%) against 32w-32u per (arch, bits, batch), and the
    model size (MB)."""

    arch: str
    bits: str
    batch: int
    megabytes: float
    reduction_pct: float
    model_megabytes: float


def footprint_bytes(model: nn.Module, input_shape, membrane_bits: int, batches: list[int]) -> tuple[list[float], float]:
    """(footprint bytes for each batch size, model bytes) of a built model (the module docstring's formula)."""
    weight_bytes = model_bits(model) / 8
    largest_layer = max(spiking_layer_sizes(model, input_shape))
    return [weight_bytes + batch * largest_layer * membrane_bits / 8 for batch in batches], weight_bytes


def footprint_megabytes(model: nn.Module, input_shape, membrane_bits: int, batches: list[int]) -> tuple[list[float], float]:
    """(footprint MB for each batch size, model size MB) of a built model."""
    totals, weight_bytes = footprint_bytes(model, input_shape, membrane_bits, batches)
    return [total / BYTES_PER_MB for total in totals], weight_bytes / BYTES_PER_MB


def footprint_table(
    archs: list[str], input_shape: tuple[int, int, int], num_classes: int,
    precisions: list[Precision], batches: list[int],
) -> list[Footprint]:
    """One row per (arch, bits, batch); reductions are against the same arch at 32w-32u."""
    rows = []
    for arch in archs:
        sizes = {
            precision: footprint_megabytes(
                build_model(ModelSpec(arch=arch, bits=str(precision)), input_shape=input_shape, num_classes=num_classes),
                input_shape, precision.membrane_bits, batches,
            )
            for precision in dict.fromkeys([BASELINE, *precisions])
        }
        baselines, _ = sizes[BASELINE]
        for index, batch in enumerate(batches):
            for precision in precisions:
                totals, weights = sizes[precision]
                reduction = 100 * (1 - totals[index] / baselines[index])
                rows.append(Footprint(arch, str(precision), batch, totals[index], reduction, weights))
    return rows


def table_lines(rows: list, cell) -> list[str]:
    """Table 2's layout: a row per (batch, bits), a column per arch, ``cell(row)`` in each."""
    archs = list(dict.fromkeys(row.arch for row in rows))
    cells = {(row.batch, row.bits, row.arch): cell(row) for row in rows}
    keys = list(dict.fromkeys((row.batch, row.bits) for row in rows))
    width = max(len(text) for text in [*cells.values(), *archs]) + 2
    lines = [f"{'batch':<7}{'bits':<9}" + "".join(f"{arch:>{width}}" for arch in archs)]
    for batch, bits in keys:
        lines.append(f"{batch:<7}{bits:<9}" + "".join(f"{cells[(batch, bits, arch)]:>{width}}" for arch in archs))
    return lines


def format_table(rows: list[Footprint]) -> str:
    """Table 2: ``MB (-reduction%)`` per (batch, bits) and arch, then the model sizes."""
    lines = table_lines(rows, lambda row: f"{row.megabytes:.2f} (-{row.reduction_pct:.2f}%)")
    first_batch = rows[0].batch
    lines.append("")
    lines.append("model size (MB): " + ", ".join(
        f"{row.arch} {row.bits} {row.model_megabytes:.2f}" for row in rows if row.batch == first_batch
    ))
    return "\n".join(lines)


def rows_as_dicts(rows: list[Footprint]) -> list[dict]:
    """The rows as plain dicts, for JSON output."""
    return [asdict(row) for row in rows]
