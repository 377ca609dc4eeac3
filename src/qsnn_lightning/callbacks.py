"""Monitors of what WS-DR regulates (Section 4.2-4.3): per-layer firing rates and their entropy,
the sign balance of binary weights, and the occupancy of the k-bit membrane levels, logged per
epoch to every Lightning logger."""

import json
import math
from pathlib import Path

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


class MembraneLevelMonitor(Callback):
    """How often each of the 2^k - 1 membrane levels (Eq. 8) is stored, per spiking layer, over
    each validation epoch. Logs ``val/membrane_level_entropy/<layer>`` (nats) and
    ``val/membrane_levels_used/<layer>`` (the share of levels that occur), and appends the full
    counts to ``<run dir>/membrane_levels.jsonl``, one line per epoch."""

    FILE = "membrane_levels.jsonl"

    def _layers(self, pl_module) -> dict:
        return {_short_name(name): m for name, m in pl_module.named_modules()
                if isinstance(m, LIF) and m.membrane_quant.enabled}

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        for layer in self._layers(pl_module).values():
            layer.count_levels(not trainer.sanity_checking)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        epoch_counts = {}
        for name, layer in self._layers(pl_module).items():
            counts = layer.level_counts
            layer.count_levels(False)
            if counts is None or counts.sum() == 0:
                continue
            counts = trainer.strategy.reduce(counts.to(pl_module.device), reduce_op="sum").long().cpu()
            shares = counts.double() / counts.sum()
            pl_module.log(f"val/membrane_level_entropy/{name}", float(-(shares[shares > 0] * shares[shares > 0].log()).sum()))
            pl_module.log(f"val/membrane_levels_used/{name}", float((counts > 0).double().mean()))
            epoch_counts[name] = counts.tolist()
        if epoch_counts and trainer.is_global_zero:
            with open(Path(trainer.default_root_dir) / self.FILE, "a") as file:
                file.write(json.dumps({"epoch": trainer.current_epoch, "layers": epoch_counts}) + "\n")
