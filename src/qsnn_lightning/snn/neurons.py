"""Multi-step leaky integrate-and-fire neurons with k-bit membrane potentials.

One time step, in the order of Eq. 10 (the order of the authors' release):

    u[t] = tau * v[t-1] + x[t]          charge        (Eq. 1; x[t] = W s^{l-1}[t] computed upstream)
    s[t] = H(u[t] - theta)              fire          (Eq. 2, triangle surrogate of Eq. 5 backward)
    u[t] = u[t] * (1 - s[t])            hard reset    (Eq. 3)
    v[t] = Q_u(u[t])                    store k bits  (Eq. 8-10)

so the quantizer acts on the state stored between time steps. Quantizing *before* the spike
(the order of the paper's Algorithm 1) is available as ``quantize_before_spike=True`` for
ablation only: at k = 2 it rounds nearly every potential to 0 and the network stops firing.

Two implementations compute the same thing: ``neuron="fused"`` (the default) runs the T steps
as one autograd node with a hand-written backward pass (:mod:`qsnn_lightning.snn.fused_lif`; faster,
and it keeps one tensor per step for the backward pass instead of about ten), and
``neuron="reference"`` is the plain loop below, differentiated by autograd, against which the
fused path is tested. ``quantize_before_spike`` runs on the reference loop.

A layer is built from one :class:`~qsnn_lightning.snn.spec.NeuronSpec` (``LIF(spec)``); its
fields read as attributes of the layer too (``lif.tau`` is ``lif.spec.tau``).

State has an explicit life: ``v`` is created on the first step of the first call, carried
across calls (streaming) until :meth:`LIF.reset` / :func:`reset_states` clears it. Backbones
clear it at the start of every forward pass, so batches never share state.
"""

from dataclasses import fields

import torch
from torch import nn

from . import fused_lif
from .quant import MembraneQuant
from .spec import NeuronSpec
from .surrogate import spike

NEURON_IMPLS = ("fused", "reference")


class LIF(nn.Module):
    """Multi-step LIF neuron on ``[T, B, ...]`` inputs returning ``[T, B, ...]`` spikes.

    After each call ``firing_rate`` holds f_l of Eq. 15 (mean spike count over neurons, batch
    and time; differentiable, for the WS-DR loss) and ``v`` the stored membrane (detached:
    streaming across calls truncates backpropagation at the call boundary).
    """

    def __init__(self, spec: NeuronSpec = NeuronSpec()):
        super().__init__()
        if spec.neuron not in NEURON_IMPLS:
            raise ValueError(f"neuron must be one of {NEURON_IMPLS}, got {spec.neuron!r}")
        self.spec = spec
        self.membrane_quant = MembraneQuant(spec.membrane_bits, scale=spec.membrane_scale, theta=spec.theta)  # Eq. 8-10
        self.v: torch.Tensor | None = None
        self.firing_rate: torch.Tensor | None = None
        self.level_counts: torch.Tensor | None = None  # see count_levels()

    def count_levels(self, enabled: bool) -> None:
        """Start (or stop) counting how often each of the 2^k - 1 membrane levels is stored, in
        eval mode: ``level_counts[j]`` counts level ``j - n``. Off by default (no cost)."""
        quant = self.membrane_quant
        self.level_counts = torch.zeros(2 * quant.levels + 1, dtype=torch.long) if enabled and quant.enabled else None

    def reset(self) -> None:
        """Forget the membrane state and the last firing rate."""
        self.v = None
        self.firing_rate = None

    def _initial_state(self, x: torch.Tensor) -> torch.Tensor:
        if self.v is None:
            return torch.zeros_like(x[0])
        if self.v.shape != x.shape[1:]:
            raise RuntimeError(
                f"LIF state has shape {tuple(self.v.shape)} but the input step has {tuple(x.shape[1:])}: "
                "call reset_states(model) between batches"
            )
        return self.v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes ``[T, B, ...]`` of the input currents ``x`` ``[T, B, ...]`` from the stored state, by the fused or the
        reference loop; sets ``v`` and ``firing_rate``."""
        spec = self.spec
        if spec.neuron == "reference" or spec.quantize_before_spike:
            out = self._reference_forward(x)
        else:
            counting = self.level_counts is not None and not self.training
            out, v = fused_lif.FusedLIF.apply(
                x, self._initial_state(x), self.membrane_quant.learned_alpha(x[0]), spec.tau, spec.theta, spec.beta, self.membrane_quant,
                fused_lif.kernels(spec.compile), self._count if counting else None,
            )
            self.v = v
        self.firing_rate = out.mean()  # f_l of Eq. 15
        return out

    def _reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        spec, v = self.spec, self._initial_state(x)
        spikes = []
        for x_t in x:
            u = spec.tau * v + x_t  # Eq. 1 / Eq. 10
            if spec.quantize_before_spike:
                u = self.membrane_quant(u)  # Algorithm 1 order (ablation only)
            s = spike(u - spec.theta, spec.beta)  # Eq. 2, surrogate Eq. 5
            u = u * (1.0 - s)  # Eq. 3, hard reset
            v = u if spec.quantize_before_spike else self.membrane_quant(u)  # Eq. 8-10
            if self.level_counts is not None and not self.training:
                self._count(v)
            spikes.append(s)
        self.v = v.detach()
        return torch.stack(spikes)

    def _count(self, v: torch.Tensor) -> None:
        quant = self.membrane_quant
        levels = quant.integer_levels(v.detach(), quant.scale(v)).long() + quant.levels
        self.level_counts = self.level_counts.to(v.device) + torch.bincount(levels.flatten(), minlength=len(self.level_counts))

    def extra_repr(self) -> str:
        """The neuron options of ``spec`` in the module's repr (the membrane bits show in ``membrane_quant``'s)."""
        spec = self.spec
        return (
            f"tau={spec.tau}, theta={spec.theta}, beta={spec.beta}, membrane_scale={spec.membrane_scale}, "
            f"quantize_before_spike={spec.quantize_before_spike}, neuron={spec.neuron}, compile={spec.compile}"
        )


for _field in fields(NeuronSpec):  # lif.tau, lif.theta, ... read lif.spec (read-only)
    setattr(LIF, _field.name, property(lambda self, name=_field.name: getattr(self.spec, name),
                                       doc=f"``spec.{_field.name}`` (read-only)"))
del _field


def spiking_layers(model: nn.Module) -> list[LIF]:
    """The model's LIF layers in registration order (the order of the forward pass in our backbones)."""
    return [m for m in model.modules() if isinstance(m, LIF)]


def reset_states(model: nn.Module) -> None:
    """Clear the membrane state of every LIF layer in ``model``."""
    for layer in spiking_layers(model):
        layer.reset()
