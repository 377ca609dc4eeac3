"""Read finished run directories for analysis (the notebooks in ``notebooks/``): per-epoch metrics,
per-layer firing rates and weight sign balance, membrane level counts, and sweep summaries."""

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .callbacks import MembraneLevelMonitor, level_entropy


def _natural_key(name: str) -> list:
    """Sort key that orders ``features.10`` after ``features.2``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def module_order(run_dir: Path) -> dict[str, int]:
    """Position of every module of the run's model in registration order (the forward order of our
    backbones), read from the keys of a checkpoint's state dict; ``{}`` before the first checkpoint."""
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    if not checkpoints:
        return {}
    state = torch.load(checkpoints[0], map_location="cpu", weights_only=True)["state_dict"]
    order: dict[str, int] = {}
    for key in state:
        parts = key.removeprefix("model.").split(".")[:-1]
        for end in range(1, len(parts) + 1):
            order.setdefault(".".join(parts[:end]), len(order))
    return order


@dataclass
class Run:
    """One run directory written by ``qsnn train``."""

    path: Path
    config: dict
    epochs: list[dict[str, float]]  # one dict per epoch: every metric logged at the end of that epoch
    results: dict  # results.json ({} while the run has not finished)
    membrane_levels: list[dict]  # membrane_levels.jsonl, one entry per validation epoch
    order: dict[str, int]  # module name -> forward position (see module_order)

    @property
    def name(self) -> str:
        """The run's ``name`` from its config, else its directory's name."""
        return self.config.get("name", self.path.name)

    def layers(self, prefix: str) -> list[str]:
        """The layer names of the metrics ``<prefix>/<layer>`` (e.g. ``val/firing_rate``), forward order."""
        names = {key[len(prefix) + 1:] for epoch in self.epochs for key in epoch if key.startswith(prefix + "/")}
        return sorted(names, key=lambda name: (self.order.get(name, len(self.order)), _natural_key(name)))

    def last(self, prefix: str) -> dict[str, float]:
        """``{layer: value}`` of ``<prefix>/<layer>`` from the last epoch that logged it."""
        for epoch in reversed(self.epochs):
            values = {layer: epoch[f"{prefix}/{layer}"] for layer in self.layers(prefix) if f"{prefix}/{layer}" in epoch}
            if values:
                return values
        return {}

    def history(self, metric: str) -> list[tuple[int, float]]:
        """``(epoch, value)`` of one metric over the epochs that logged it."""
        return [(int(epoch["epoch"]), epoch[metric]) for epoch in self.epochs if metric in epoch]


def read_metrics(path: Path) -> list[dict[str, float]]:
    """metrics.csv (Lightning's CSVLogger: one row per logging call) merged into one dict per epoch."""
    epochs: dict[int, dict[str, float]] = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            epoch = int(row["epoch"])
            merged = epochs.setdefault(epoch, {"epoch": epoch})
            merged.update({key: float(value) for key, value in row.items() if value not in ("", None) and key != "epoch"})
    return [epochs[epoch] for epoch in sorted(epochs)]


def read_run(path: str | Path) -> Run:
    """A run directory (``runs/<experiment>/<timestamp>``); finished or still running."""
    path = Path(path)
    if not (path / "metrics.csv").is_file():
        raise FileNotFoundError(f"{path} has no metrics.csv: pass a run directory written by qsnn train")
    config = OmegaConf.to_container(OmegaConf.load(path / "config.yaml")) if (path / "config.yaml").is_file() else {}
    results_file, levels_file = path / "results.json", path / MembraneLevelMonitor.FILE
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    levels = [json.loads(line) for line in levels_file.read_text().splitlines() if line] if levels_file.is_file() else []
    return Run(path, config, read_metrics(path / "metrics.csv"), results, levels, module_order(path))


def stored_level_statistics(run_dir: str | Path) -> dict[str, "float | None"]:
    """What the k-bit membranes held in the run's last validation epoch (``membrane_levels.jsonl``),
    over every quantized layer: ``stored_nonzero``, the share of stored membranes not at level 0,
    and ``level_entropy``, the mean over layers of the levels' entropy (nats); None without counts.

        counts c_j of levels j = -n..n:  nonzero = sum_{j != 0} c_j / sum_j c_j,  H = -sum_j p_j ln p_j"""
    levels_file = Path(run_dir) / MembraneLevelMonitor.FILE
    lines = levels_file.read_text().splitlines() if levels_file.is_file() else []
    if not lines:
        return {"stored_nonzero": None, "level_entropy": None}
    layers = [torch.tensor(counts, dtype=torch.float64) for counts in json.loads(lines[-1])["layers"].values()]
    total = sum(counts.sum() for counts in layers)
    zeros = sum(counts[len(counts) // 2] for counts in layers)
    entropies = [level_entropy(counts) for counts in layers]
    return {"stored_nonzero": float(1 - zeros / total), "level_entropy": sum(entropies) / len(entropies)}


def read_summary(path: str | Path) -> list[dict]:
    """A sweep's summary.csv, numbers as numbers."""
    def number(text: str):
        try:
            return float(text) if text != "" else float("nan")
        except ValueError:
            return text

    with open(path, newline="") as file:
        return [{key: number(value) for key, value in row.items()} for row in csv.DictReader(file)]
