"""Our backbones with another library's LIF neuron in place of ours, for the throughput benchmark.

Each peer is the LIF of Q-SNN's full-precision baseline in that library (``u = 0.5 u + x``, hard
reset to 0, threshold 1), with the library's own surrogate gradient and its fastest backend for
the device; everything else (conv, BatchNorm, pooling, fc, time folding) is our fp32 network, so
the networks differ in the neuron only.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from qsnn_lightning.snn.backbones import BACKBONES
from qsnn_lightning.snn.layers import LayerFactory
from qsnn_lightning.snn.spec import ModelSpec

PEERS = ("spikingjelly", "snntorch")
INSTALL_HINT = "pip install -e '.[bench]' (or make bench)"


class MissingPeer(RuntimeError):
    """A peer library that is not installed (one-line message with the install command)."""


def _import(name: str):
    try:
        return __import__(name)
    except ImportError:
        raise MissingPeer(f"{name} is not installed; {INSTALL_HINT}") from None


def spikingjelly_lif() -> nn.Module:
    """SpikingJelly's multi-step ``LIFNode``: tau = 2 with ``decay_input=False`` is ``u = 0.5 u + x``.
    SpikingJelly picks its backend from the device (its registered CPU operator, or its
    CUDA/Triton kernels on a GPU)."""
    _import("spikingjelly")
    from spikingjelly.activation_based import neuron

    return neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0, step_mode="m")


class SnnTorchLeaky(nn.Module):
    """snnTorch's single-step ``Leaky`` (beta = 0.5, reset to zero) run over ``[T, B, ...]``."""

    def __init__(self):
        super().__init__()
        snntorch = _import("snntorch")
        self.leaky = snntorch.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = torch.zeros_like(x[0])
        spikes = []
        for x_t in x:
            spike, mem = self.leaky(x_t, mem)
            spikes.append(spike)
        return torch.stack(spikes)


def reset_spikingjelly(model: nn.Module) -> None:
    """SpikingJelly neurons keep their state across calls; its users reset them after each batch."""
    from spikingjelly.activation_based import functional

    functional.reset_net(model)


NEURONS: dict[str, Callable[[], nn.Module]] = {"spikingjelly": spikingjelly_lif, "snntorch": SnnTorchLeaky}
AFTER_STEP: dict[str, Callable[[nn.Module], None]] = {"spikingjelly": reset_spikingjelly, "snntorch": lambda model: None}


@dataclass(frozen=True)
class PeerFactory(LayerFactory):
    """Our fp32 layers around a peer's neuron."""

    make_neuron: Callable[[], nn.Module] = spikingjelly_lif

    def lif(self) -> nn.Module:
        return self.make_neuron()


def build_peer(peer: str, arch: str, input_shape: tuple[int, int, int], timesteps: int, num_classes: int = 10) -> nn.Module:
    """Backbone ``arch`` at full precision (32w32u, no weight standardization) with ``peer``'s LIF."""
    spec = ModelSpec(arch=arch, bits="32w32u", standardize="none", timesteps=timesteps)
    factory = PeerFactory(spec, make_neuron=NEURONS[peer])
    return BACKBONES[arch](factory, num_classes=num_classes, input_shape=input_shape, timesteps=timesteps)
