"""Firing-rate, entropy and weight-sign monitors: columns in the CSV metrics of a short run, with
values equal to a direct computation on the same data and weights."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from dataset_files import write_fashion_mnist
from qsnn_lightning.checkpoint import read_checkpoint
from qsnn_lightning.data.modules import make_datamodule
from qsnn_lightning.snn.layers import QConv2d, QLinear
from qsnn_lightning.snn.neurons import LIF, spiking_layers
from qsnn_lightning.snn.quant import BinaryWeight
from qsnn_lightning.training.callbacks import bernoulli_entropy, sign_balance
from qsnn_lightning.training.checkpoint import module_from_checkpoint
from qsnn_lightning.training.config import load_config
from qsnn_lightning.training.train import train


def test_bernoulli_entropy_is_eq12():
    assert bernoulli_entropy(0.5) == pytest.approx(math.log(2))
    assert bernoulli_entropy(0.0) == bernoulli_entropy(1.0) == 0.0
    assert bernoulli_entropy(0.1) == pytest.approx(-(0.1 * math.log(0.1) + 0.9 * math.log(0.9)))


@pytest.mark.slow
def test_short_run_logs_per_layer_rates_entropies_and_sign_balance(tmp_path):
    data = write_fashion_mnist(tmp_path / "data", train=40, test=16)
    cfg = load_config("fmnist_1w2u", [
        f"data.data_dir={data}", "data.download=false", "data.batch_size=8", "data.val_fraction=0.2",
        "trainer.max_epochs=1", "trainer.limit_val_batches=1", "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false", f"run_dir={tmp_path / 'runs'}",
    ])
    results = train(cfg)
    rows = list(csv.DictReader(open(Path(results["run_dir"]) / "metrics.csv")))
    logged = {key: float(value) for row in rows for key, value in row.items() if value and "/" in key}

    checkpoint = read_checkpoint(str(Path(results["run_dir"]) / "checkpoints" / "last.ckpt"))
    model = module_from_checkpoint(checkpoint).model.eval()
    names = [name for name, m in model.named_modules() if isinstance(m, LIF)]
    assert len(names) == 4
    for name in names:
        for key in (f"train/firing_rate/{name}", f"train/spike_entropy/{name}", f"val/firing_rate/{name}"):
            assert key in logged, key
    # results.json keeps the last validation rates in forward order (the sweep summary reads them)
    assert list(results["val_firing_rates"]) == names
    assert results["val_firing_rates"] == pytest.approx({name: logged[f"val/firing_rate/{name}"] for name in names})

    # the validation epoch saw one batch: the same batch through the saved model gives the rates
    datamodule = make_datamodule(cfg)
    datamodule.setup("fit")
    images, _ = next(iter(datamodule.val_dataloader()))
    for layer in spiking_layers(model):
        layer.count_levels(True)
    with torch.no_grad():
        model(images)
    (epoch_line,) = (Path(results["run_dir"]) / "membrane_levels.jsonl").read_text().splitlines()
    counted = json.loads(epoch_line)["layers"]
    for name, layer in zip(names, spiking_layers(model)):
        # 2^k - 1 = 3 levels at k = 2, every stored potential of the validation batch counted once
        assert counted[name] == layer.level_counts.tolist() and len(counted[name]) == 3
        assert sum(counted[name]) == layer.v.numel() * model.timesteps
        shares = torch.tensor(counted[name], dtype=torch.double) / sum(counted[name])
        entropy = float(-(shares[shares > 0] * shares[shares > 0].log()).sum())
        assert logged[f"val/membrane_level_entropy/{name}"] == pytest.approx(entropy, abs=1e-6)
        rate = logged[f"val/firing_rate/{name}"]
        assert rate == pytest.approx(layer.firing_rate.item(), abs=1e-6)
        assert logged[f"val/spike_entropy/{name}"] == pytest.approx(bernoulli_entropy(rate), abs=1e-6)

    binary = {name: m for name, m in model.named_modules()
              if isinstance(m, (QConv2d, QLinear)) and isinstance(m.weight_quant, BinaryWeight)}
    assert len(binary) == 3
    for name, layer in binary.items():
        balance = logged[f"weights/sign_balance/{name}"]
        assert balance == pytest.approx(sign_balance(layer), abs=1e-6)
        assert 0.4 < balance < 0.6  # WS-DR's standardization keeps the signs balanced
        assert logged[f"weights/sign_entropy/{name}"] == pytest.approx(bernoulli_entropy(balance), abs=1e-6)


def test_distribution_figure_is_saved_and_logged_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = write_fashion_mnist(tmp_path / "data", train=40, test=16)
    cfg = load_config("fmnist_1w4u", [
        f"data.data_dir={data}", "data.download=false", "data.batch_size=8", "data.val_fraction=0.2",
        "trainer.max_epochs=2", "trainer.limit_val_batches=1", "trainer.accelerator=cpu", "logger=tensorboard",
        "trainer.enable_progress_bar=false", f"run_dir={tmp_path / 'runs'}", "speed.compile=false",
    ])
    run_dir = Path(train(cfg)["run_dir"])
    figures = sorted((run_dir / "figures").glob("*.png"))
    assert [f.name for f in figures] == ["epoch_000.png", "epoch_001.png"]
    assert figures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert "distributions" in events.Tags()["images"]
    assert len(events.Images("distributions")) == 2
