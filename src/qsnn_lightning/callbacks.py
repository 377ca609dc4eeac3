"""Monitors of what WS-DR regulates (Section 4.2-4.3): per-layer firing rates and their entropy,
and the sign balance of binary weights, logged per epoch to every Lightning logger."""

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics import MeanMetric

from .layers import QConv2d, QLinear
from .neurons import LIF
from .quant import BinaryWeight


def bernoulli_entropy(p: float) -> float:
    """Eq. 12: ``H = -[p ln p + (1 - p) ln(1 - p)]`` in nats (0 at p = 0 or 1, ln 2 at p = 0.5)."""
    return -sum(q * math.log(q) for q in (p, 1.0 - p) if q > 0.0)


def _short_name(name: str) -> str:
    return name.removeprefix("model.")


class SpikeMonitor(Callback):
    """Per spiking layer and epoch, for training and validation: the firing rate f_l (Eq. 15,
    averaged over the epoch's samples and across processes) as ``<split>/firing_rate/<layer>``
    and its entropy (Eq. 12) as ``<split>/spike_entropy/<layer>``."""

    SPLITS = ("train", "val")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.layers = {_short_name(name): m for name, m in pl_module.named_modules() if isinstance(m, LIF)}
        self.rates = {
            split: {name: MeanMetric().to(pl_module.device) for name in self.layers} for split in self.SPLITS
        }

    def _update(self, split: str, batch) -> None:
        size = len(batch[1])
        for name, layer in self.layers.items():
            if layer.firing_rate is not None:
                self.rates[split][name].update(layer.firing_rate.detach(), weight=size)

    def _log(self, split: str, pl_module: L.LightningModule) -> None:
        for name, metric in self.rates[split].items():
            if not metric.update_called:
                continue
            rate = float(metric.compute())
            pl_module.log(f"{split}/firing_rate/{name}", rate)
            pl_module.log(f"{split}/spike_entropy/{name}", bernoulli_entropy(rate))
            metric.reset()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._update("train", batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._update("val", batch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._log("train", pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._log("val", pl_module)


def sign_balance(layer: "QConv2d | QLinear") -> float:
    """p(+1) of a binary layer's weights, as its quantizer computes the signs (Eq. 7, 14)."""
    signs, _ = layer.weight_quant.integer_weights(layer.weight)
    return float((signs > 0).double().mean())


class WeightSignMonitor(Callback):
    """Per binary layer and training epoch: p(+1) of its signs as ``weights/sign_balance/<layer>``
    and their entropy (Eq. 12) as ``weights/sign_entropy/<layer>``; WS-DR's standardization
    (Eq. 14) aims at p = 0.5."""

    @torch.no_grad()
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for name, module in pl_module.named_modules():
            if isinstance(module, (QConv2d, QLinear)) and isinstance(module.weight_quant, BinaryWeight):
                balance = sign_balance(module)
                pl_module.log(f"weights/sign_balance/{_short_name(name)}", balance)
                pl_module.log(f"weights/sign_entropy/{_short_name(name)}", bernoulli_entropy(balance))
