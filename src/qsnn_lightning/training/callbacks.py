"""Monitors of what WS-DR regulates (Section 4.2-4.3): per-layer firing rates and their entropy,
the sign balance of binary weights, and the occupancy of the k-bit membrane levels, logged per
epoch to every Lightning logger. Validation monitors read the validation split only, never the
test split that ``test_every_epoch`` adds to the validation loop."""

import json
import math
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics import MeanMetric

from ..files import atomic_open
from ..snn.layers import QConv2d, QLinear
from ..snn.neurons import LIF
from ..snn.quant import BinaryWeight
from .epoch_test import VALIDATION


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

    def __init__(self):
        self.last_rates: dict[str, dict[str, float]] = {}  # split -> layer -> rate, kept after fit

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Find the model's LIF layers and make a running mean of f_l per layer and split, on the module's device."""
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
            self.last_rates.setdefault(split, {})[name] = rate
            pl_module.log(f"{split}/firing_rate/{name}", rate)
            pl_module.log(f"{split}/spike_entropy/{name}", bernoulli_entropy(rate))
            metric.reset()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Add the batch's f_l of every layer to the training means, weighted by the batch size."""
        self._update("train", batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        """Add the batch's f_l to the validation means (validation split only, not in the sanity check)."""
        if not trainer.sanity_checking and dataloader_idx == VALIDATION:
            self._update("val", batch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Log the epoch's training firing rates and their entropies, then reset the means."""
        self._log("train", pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        """Log the epoch's validation firing rates and their entropies (not after the sanity check)."""
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
        """Log p(+1) of every binary layer's signs and its entropy (Eq. 12)."""
        for name, module in pl_module.named_modules():
            if isinstance(module, (QConv2d, QLinear)) and isinstance(module.weight_quant, BinaryWeight):
                balance = sign_balance(module)
                pl_module.log(f"weights/sign_balance/{_short_name(name)}", balance)
                pl_module.log(f"weights/sign_entropy/{_short_name(name)}", bernoulli_entropy(balance))


def level_entropy(counts: torch.Tensor) -> float:
    """The entropy (nats) of the share of each membrane level: ``-sum_j p_j ln p_j``, ``p_j = c_j / sum c``."""
    shares = counts.double() / counts.sum()
    shares = shares[shares > 0]
    return float(-(shares * shares.log()).sum())


class MembraneLevelMonitor(Callback):
    """How often each of the 2^k - 1 membrane levels (Eq. 8) is stored, per spiking layer, over
    each validation epoch. Logs ``val/membrane_level_entropy/<layer>`` (nats) and
    ``val/membrane_levels_used/<layer>`` (the share of levels that occur), and appends the full
    counts to ``<run dir>/membrane_levels.jsonl``, one line per epoch."""

    FILE = "membrane_levels.jsonl"

    def __init__(self):
        self.last_counts: dict[str, list[int]] = {}
        self.counted: dict[str, torch.Tensor] = {}  # this epoch's counts per layer, taken when counting stops

    def _layers(self, pl_module) -> dict:
        return {_short_name(name): m for name, m in pl_module.named_modules()
                if isinstance(m, LIF) and m.membrane_quant.enabled}

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        """Start counting levels in every quantized LIF layer, or stop during the sanity check."""
        self.counted = {}
        for layer in self._layers(pl_module).values():
            layer.count_levels(not trainer.sanity_checking)

    def _stop_counting(self, pl_module) -> None:
        """Keep each layer's counts so far and stop counting (the validation split is over)."""
        for name, layer in self._layers(pl_module).items():
            if layer.level_counts is not None:
                self.counted[name] = layer.level_counts
                layer.count_levels(False)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        """Stop counting at the first batch of the test split that follows the validation split."""
        if dataloader_idx != VALIDATION:  # the test split follows the validation split
            self._stop_counting(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        """Log each layer's level entropy and share of levels used (counts summed over processes) and, on rank zero,
        append the counts to ``membrane_levels.jsonl``."""
        self._stop_counting(pl_module)
        epoch_counts = {}
        for name in self._layers(pl_module):
            counts = self.counted.get(name)
            if counts is None or counts.sum() == 0:
                continue
            counts = trainer.strategy.reduce(counts.to(pl_module.device), reduce_op="sum").long().cpu()
            pl_module.log(f"val/membrane_level_entropy/{name}", level_entropy(counts))
            pl_module.log(f"val/membrane_levels_used/{name}", float((counts > 0).double().mean()))
            epoch_counts[name] = counts.tolist()
        if epoch_counts:
            self.last_counts = epoch_counts
        if epoch_counts and trainer.is_global_zero:
            with open(Path(trainer.default_root_dir) / self.FILE, "a") as file:
                file.write(json.dumps({"epoch": trainer.current_epoch, "layers": epoch_counts}) + "\n")


class DistributionFigure(Callback):
    """After each validation epoch, a figure in the style of the paper's Figures 2 and 4 for the
    first eight spiking layers: p(s = 1) and p(s = 0) per layer, the sign balance of the binary
    layers, and the share of each membrane level. Saved as ``<run dir>/figures/epoch_NNN.png`` and
    logged as an image by the loggers that take images (TensorBoard, W&B). Reads the monitors' results."""

    LAYERS_SHOWN = 8

    def __init__(self, spikes: SpikeMonitor, levels: MembraneLevelMonitor):
        self.spikes, self.levels = spikes, levels

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        """Draw, save and log this epoch's figure (rank zero, not in the sanity check, once validation rates exist)."""
        rates = self.spikes.last_rates.get("val", {})
        if trainer.sanity_checking or not trainer.is_global_zero or not rates:
            return
        import matplotlib  # on demand: pyplot only once the Agg backend is chosen, and only to draw

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        names = list(rates)[: self.LAYERS_SHOWN]
        balances = {_short_name(name): sign_balance(m) for name, m in pl_module.named_modules()
                    if isinstance(m, (QConv2d, QLinear)) and isinstance(m.weight_quant, BinaryWeight)}
        figure, axes = plt.subplots(1, 3, figsize=(15, 4))
        fired = [rates[name] for name in names]
        axes[0].bar(names, fired, label="p(s = 1)")
        axes[0].bar(names, [1 - p for p in fired], bottom=fired, label="p(s = 0)", alpha=0.4)
        axes[0].set_title("spikes per layer (Fig. 2 / 4)")
        axes[1].bar(list(balances)[: self.LAYERS_SHOWN], list(balances.values())[: self.LAYERS_SHOWN])
        axes[1].axhline(0.5, color="black", linewidth=0.8)
        axes[1].set_title("binary weights: p(+1)")
        for name in names:
            counts = self.levels.last_counts.get(name)
            if counts:
                n = len(counts) // 2
                axes[2].plot(range(-n, n + 1), [c / sum(counts) for c in counts], marker="o", label=name)
        axes[2].set_yscale("log")
        axes[2].set_xlabel("stored level q")
        axes[2].set_title("membrane levels (share)")
        axes[2].legend(fontsize=7)
        for axis in axes:
            axis.tick_params(axis="x", labelrotation=60, labelsize=7)
        axes[0].legend(fontsize=7)
        figure.suptitle(f"epoch {trainer.current_epoch}")
        figure.tight_layout()
        folder = Path(trainer.default_root_dir) / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"epoch_{trainer.current_epoch:03d}.png"
        with atomic_open(path) as file:  # a full disk leaves no partial figure
            figure.savefig(file, format="png", dpi=80)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # Weights & Biases
                logger.log_image("distributions", [str(path)], step=trainer.global_step)
            elif hasattr(logger.experiment, "add_figure"):  # TensorBoard
                logger.experiment.add_figure("distributions", figure, global_step=trainer.current_epoch)
        plt.close(figure)


def default_monitors() -> list[Callback]:
    """The monitors every run gets: spikes, weight signs, membrane levels and their figure."""
    spikes, levels = SpikeMonitor(), MembraneLevelMonitor()
    return [spikes, WeightSignMonitor(), levels, DistributionFigure(spikes, levels)]
