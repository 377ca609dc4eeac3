"""qsnn-lightning: Quantized Spiking Neural Networks (Q-SNN) with PyTorch Lightning.

The building blocks follow the Q-SNN paper (Wei et al.): LIF neurons (Eq. 1-3) with the
triangle surrogate gradient (Eq. 5), binary weights (Eq. 6-7) with WS-DR standardization
(Eq. 14), k-bit membrane potentials (Eq. 8-10) and the WS-DR spike loss (Eq. 15-16).
"""

__version__ = "0.1.0"
