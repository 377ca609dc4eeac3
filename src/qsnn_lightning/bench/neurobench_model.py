"""Our network in NeuroBench's harness: the model wrapper, the hook on our LIF, and one run of
``neurobench.Benchmark`` over a data loader. This module imports ``neurobench`` (the optional extra
``qsnn-lightning[neurobench]``); ``harness.py`` loads it only once the package is found."""

import contextlib
import io

import torch
from neurobench.benchmarks import Benchmark
from neurobench.hooks.layer import LayerHook
from neurobench.hooks.neuron import NeuronHook
from neurobench.metrics.abstract.workload_metric import WorkloadMetric
from neurobench.metrics.static import ConnectionSparsity, Footprint
from neurobench.metrics.workload import (
    ActivationSparsity,
    ActivationSparsityByLayer,
    ClassificationAccuracy,
    MembraneUpdates,
    SynapticOperations,
)
from neurobench.models import TorchModel
from torch.utils.data import DataLoader

from ..snn.backbones import SpikingBackbone
from ..snn.neurons import LIF
from .view import deployed_view

NEURON_SUFFIX = ".neuron"  # SteppedLIF.neuron: the LIF inside the view's wrapper, named as the backbone's LIF


class LIFHook(NeuronHook):
    """NeuroBench's neuron hook on our LIF: its spikes, and its stored membrane ``v`` before and
    after each call (one time step in the view), which NeuroBench 2.3.0 records only for snnTorch
    neurons (``hasattr(layer, "mem")``); ``MembraneUpdates`` reads them as it does theirs."""

    def pre_hook_fn(self, layer: LIF, input: tuple) -> None:
        """Record the input and the membrane before the step (zeros before the first)."""
        super().pre_hook_fn(layer, input)
        self.pre_fire_mem_potential.append(layer.v if layer.v is not None else torch.zeros_like(input[0][0]))

    def hook_fn(self, layer: LIF, input: tuple, output: torch.Tensor) -> None:
        """Record the spikes and the membrane stored after the step."""
        super().hook_fn(layer, input, output)
        self.post_fire_mem_potential.append(layer.v)


class QSNNModel(TorchModel):
    """NeuroBench's ``TorchModel`` around the :func:`~.view.deployed_view` of a backbone: the
    backbone's per-step logits ``[T, B, classes]``; its LIF layers are the activation layers, named
    by their path in the backbone (``stem_lif``, ``features.1``)."""

    def __init__(self, backbone: SpikingBackbone):
        super().__init__(deployed_view(backbone))
        self.add_activation_module(LIF)

    def register_hooks(self) -> None:
        """NeuroBench's hooks, with :class:`LIFHook` on every LIF and the LIF's full path as its name:
        NeuroBench 2.3.0 names a layer by its attribute in its parent, so two LIFs in Sequentials
        (``features.1``, ``blocks.0.1``) would share one name in ``ActivationSparsityByLayer``."""
        for name, module in self.net.named_modules():
            if isinstance(module, LIF):
                self.activation_hooks.append(LIFHook(module, name.removesuffix(NEURON_SUFFIX)))
        for layer in self.connection_layers():
            self.connection_hooks.append(LayerHook(layer))


class LayerSparsity(ActivationSparsityByLayer):
    """NeuroBench 2.3.0's ``ActivationSparsityByLayer`` skips ``WorkloadMetric.__init__``, so it has no
    ``requires_hooks`` and ``Benchmark`` fails on it; this sets it (the metric needs the hooks)."""

    def __init__(self):
        WorkloadMetric.__init__(self, requires_hooks=True)
        self.reset()


def predicted_class(logits: torch.Tensor) -> torch.Tensor:
    """The class of per-step logits ``[T, B, classes]``: the argmax of their time mean, as ``qsnn test`` scores it."""
    return logits.mean(0).argmax(1)


STATIC_METRICS = [ConnectionSparsity]  # of the deployed weights; the footprint is taken of the stored model
WORKLOAD_METRICS = [ClassificationAccuracy, ActivationSparsity, LayerSparsity, SynapticOperations, MembraneUpdates]


def run_benchmark(backbone: SpikingBackbone, loader: DataLoader) -> dict:
    """NeuroBench's results for ``backbone`` over ``loader``, by metric name: connection sparsity
    of the deployed weights (the 8-bit layers' zeros; binary weights are never 0) and the workload metrics.
    NeuroBench 2.3.0 catches an exception in a metric, prints it and reports 0.0; here it stops the run."""
    model = QSNNModel(backbone)
    benchmark = Benchmark(model, loader, [], [predicted_class], [STATIC_METRICS, WORKLOAD_METRICS])
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), torch.no_grad():
            results = benchmark.run(quiet=False)
    finally:
        model.cleanup_hooks()
    failures = [line for line in printed.getvalue().splitlines() if line.startswith("Error running")]
    if failures:
        raise RuntimeError(f"NeuroBench could not compute a metric: {failures[0]}")
    return results


def stored_footprint(backbone: SpikingBackbone) -> int:
    """NeuroBench's ``Footprint`` of the backbone as the checkpoint stores it: every parameter and
    buffer at its dtype's size, the latent fp32 weights at 32 bits (``TorchModel`` sets eval mode)."""
    return int(Footprint()(TorchModel(backbone)))
