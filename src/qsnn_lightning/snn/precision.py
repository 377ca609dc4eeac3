"""Bit-width specifications such as ``1w2u``: weight bits and membrane bits (k).

``32w`` is full precision everywhere. ``1w`` binarizes the hidden layers (Eq. 6-7) and keeps the
first and last layers at 8 bits, as the paper does. ``2w``, ``4w`` and ``8w`` quantize the hidden
layers to that many bits (first and last at 8), for comparisons such as MINT's 2w-2u. ``Ku`` with
K in 2..16 quantizes membrane potentials to K bits (Eq. 8); ``32u`` leaves them in floating point.
"""

import re
from dataclasses import dataclass

from torch import nn

from .quant import FULL_PRECISION_BITS, BinaryWeight, FullPrecisionWeight, IntWeight

EDGE_LAYER_BITS = 8
_SPEC = re.compile(r"^(\d+)w(\d+)u$")
WEIGHT_BITS = (1, 2, 4, 8, FULL_PRECISION_BITS)
WEIGHT_BITS_HELP = "weight bits must be one of 1, 2, 4, 8, 32"
MEMBRANE_BITS_HELP = "membrane bits k must be 2..16 or 32"


@dataclass(frozen=True)
class Precision:
    """Weight bits of the hidden layers and membrane bits k; ``str()`` gives ``<W>w<K>u``."""

    weight_bits: int
    membrane_bits: int

    @classmethod
    def parse(cls, text: "str | Precision") -> "Precision":
        """``"1w2u"`` -> ``Precision(1, 2)``; raises ValueError with a one-line explanation."""
        if isinstance(text, Precision):
            return text
        match = _SPEC.match(str(text).strip())
        if not match:
            raise ValueError(f"bit width {text!r} is not of the form <W>w<K>u, e.g. 1w2u, 1w8u or 32w32u")
        weight_bits, membrane_bits = int(match[1]), int(match[2])
        if weight_bits not in WEIGHT_BITS:
            raise ValueError(f"bit width {text!r}: {WEIGHT_BITS_HELP}, got {weight_bits}")
        if not (2 <= membrane_bits <= 16 or membrane_bits == FULL_PRECISION_BITS):
            raise ValueError(f"bit width {text!r}: {MEMBRANE_BITS_HELP}, got {membrane_bits}")
        return cls(weight_bits, membrane_bits)

    def __str__(self) -> str:
        return f"{self.weight_bits}w{self.membrane_bits}u"

    @property
    def full_precision(self) -> bool:
        """True for ``32w32u``, the full-precision baseline."""
        return self.weight_bits == FULL_PRECISION_BITS and self.membrane_bits == FULL_PRECISION_BITS

    def weight_quant(
        self, edge: bool, standardize: str = "layer", compile: bool = False, ste_window: float = 1.0,
    ) -> nn.Module:
        """The weight quantizer of a layer; ``edge`` marks the first and last layers (8-bit);
        ``compile`` compiles the binary quantizer's kernels; ``ste_window`` is the binary sign's
        straight-through window (snn/quant.py)."""
        if self.weight_bits == FULL_PRECISION_BITS:
            return FullPrecisionWeight()
        if edge:
            return IntWeight(EDGE_LAYER_BITS)
        if self.weight_bits == 1:
            return BinaryWeight(standardize, compile=compile, ste_window=ste_window)
        return IntWeight(self.weight_bits)
