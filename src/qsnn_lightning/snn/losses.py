"""The WS-DR training objective (Eq. 15-16)."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

REDUCTIONS = ("sum", "mean")


def hidden_layers(per_layer: Sequence) -> list:
    """The entries of the hidden spiking layers l = 2..L-1 of Eq. 15 (all but the first and the
    last, which follow the input and feed the classifier), from per-layer values in forward order."""
    return list(per_layer)[1:-1]


def spike_regularization(firing_rates: Sequence[torch.Tensor], reduction: str = "sum") -> torch.Tensor:
    """L_s of Eq. 15: ``sum_{l=2}^{L-1} (f_l - 0.5)^2``.

    ``firing_rates`` are the f_l of every spiking layer in forward order; the first and the last
    are excluded (they follow the input and the classification). ``reduction="mean"`` averages
    over the hidden layers instead (the authors' release). Zero when there is no hidden layer.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"spike loss reduction must be one of {REDUCTIONS}, got {reduction!r}")
    hidden = hidden_layers(firing_rates)
    if not hidden:
        return torch.zeros(()) if not firing_rates else torch.zeros_like(firing_rates[0])
    terms = (torch.stack(hidden) - 0.5) ** 2
    return terms.sum() if reduction == "sum" else terms.mean()


@dataclass(frozen=True)
class LossParts:
    """The WS-DR loss of a batch (Eq. 16): ``total = cross_entropy + lambda * spike``, ``spike`` being L_s of Eq. 15."""

    total: torch.Tensor
    cross_entropy: torch.Tensor
    spike: torch.Tensor


class WSDRLoss(nn.Module):
    """Eq. 16: ``L = (1/T) sum_t CE(o[t], y) + lambda * L_s``; ``lam = 0`` disables the spike term."""

    def __init__(self, lam: float = 1e-3, reduction: str = "sum"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"spike loss reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.lam = lam
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, firing_rates: Sequence[torch.Tensor]) -> LossParts:
        """``logits`` are per-step outputs ``[T, B, classes]``; ``targets`` class indices ``[B]``."""
        steps = logits.shape[0]
        # The mean over T*B rows is the mean over t of the batch-mean CE of each step.
        cross_entropy = F.cross_entropy(logits.flatten(0, 1), targets.repeat(steps))
        spike = spike_regularization(firing_rates, self.reduction)
        return LossParts(cross_entropy + self.lam * spike, cross_entropy, spike)
