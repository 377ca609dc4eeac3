"""``qsnn bench``: the view NeuroBench reads computes the model's very logits; the spike-driven
accumulate count of the integer reference by hand; and, on briefly trained Fashion-MNIST and
N-Fashion-MNIST checkpoints, NeuroBench's figures against ours: activation sparsity against
1 - the LIF layers' firing rates, effective ACs against the integer reference's count, accuracy
against ``qsnn test``, and the deployed footprint against ``qsnn footprint`` and ``qsnn export``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dataset_files import write_dvs_gesture, write_fashion_mnist
from qsnn_lightning.bench import bench_checkpoint, results_path
from qsnn_lightning.bench.harness import split_loader
from qsnn_lightning.bench.view import deployed_view
from qsnn_lightning.checkpoint import backbone_from_checkpoint, read_checkpoint
from qsnn_lightning.cli import main
from qsnn_lightning.data import EVENT_DATASETS
from qsnn_lightning.export import fold, quantize_input, reference
from qsnn_lightning.export.writer import export_checkpoint
from qsnn_lightning.snn.backbones import build_model
from qsnn_lightning.snn.footprint import BYTES_PER_MB, footprint_table
from qsnn_lightning.snn.neurons import spiking_layers
from qsnn_lightning.snn.precision import Precision
from qsnn_lightning.snn.spec import ModelSpec
from qsnn_lightning.training.config import load_config, restore_config
from qsnn_lightning.training.train import evaluate_checkpoint, train


def calibrated_fmnistnet() -> torch.nn.Module:
    """A fmnistnet 1w2u with BatchNorm statistics and scales set by two training-mode passes, in eval mode."""
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="fmnistnet", bits="1w2u", membrane_scale="threshold"), num_classes=10,
                        input_shape=(1, 28, 28))
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 1, 28, 28))
    return model.eval()


def test_the_view_neurobench_reads_computes_the_same_logits_bit_for_bit():
    """Plain layers holding Q(w), and the LIF called once per step, change no value; no quantized layer is left."""
    model = calibrated_fmnistnet()
    view = deployed_view(model)
    images = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(view(images), model(images))
    assert not any(hasattr(module, "weight_quant") for module in view.modules())
    assert all(hasattr(module, "weight_quant") for module in model.modules() if isinstance(module, torch.nn.Conv2d))


def test_spike_accumulates_count_each_spike_times_its_fan_out():
    """A 3x3 conv with 5 outputs and same padding on a 4x4 map: a spike inside reaches 9 positions,
    one on an edge 6, one in a corner 4; each reached position holds 5 outputs."""
    spikes = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    spikes[0, 0, 1, 1] = 1  # inside: 9 positions
    spikes[0, 1, 0, 2] = 1  # top edge: 6
    spikes[0, 1, 3, 3] = 1  # corner: 4
    assert reference._fan_out_sum(spikes, out_channels=5, kernel=3, stride=1, padding=1) == (9 + 6 + 4) * 5


def test_without_neurobench_bench_names_the_pip_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "neurobench", None)  # as if not installed
    assert main(["bench", str(tmp_path / "any.ckpt")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("qsnn: error: qsnn bench needs NeuroBench") and "pip install 'qsnn-lightning[neurobench]'" in error
    assert len(error.splitlines()) == 1


def our_firing_rates(backbone, loader) -> dict[str, float]:
    """Each LIF layer's firing rate f_l (Eq. 15) over the loader's samples, as the SpikeMonitor averages it
    (batch means weighted by batch size)."""
    names = {layer: name for name, layer in backbone.named_modules() if layer in spiking_layers(backbone)}
    sums, count = dict.fromkeys(names.values(), 0.0), 0
    with torch.no_grad():
        for images, labels in loader:
            backbone(images)
            for layer, name in names.items():
                sums[name] += float(layer.firing_rate) * len(labels)
            count += len(labels)
    return {name: total / count for name, total in sums.items()}


def briefly_trained(experiment: str, root, *settings: str) -> tuple[dict, list[str]]:
    """The results of ``experiment`` (with ``settings``) after one short epoch on small Fashion-MNIST idx
    files (N-Fashion-MNIST simulates its events from them), and the overrides that find those files."""
    data = write_fashion_mnist(root / "data", train=40, test=12)
    overrides = [f"data.data_dir={data}", "data.download=false"]
    cfg = load_config(experiment, [*overrides, f"run_dir={root / 'runs'}", "data.batch_size=8", "trainer.max_epochs=1",
                                   "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", *settings])
    return train(cfg), overrides


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["fmnist_1w2u", "nfmnist_1w2u"])
def test_neurobench_figures_agree_with_ours(experiment, tmp_path):
    results, overrides = briefly_trained(experiment, tmp_path)
    checkpoint = results["checkpoint"]
    report = bench_checkpoint(checkpoint, None, overrides)
    assert json.loads(results_path(checkpoint).read_text()) == json.loads(json.dumps(report))

    saved = read_checkpoint(checkpoint)
    backbone, spec = backbone_from_checkpoint(saved)
    backbone.eval()
    config = restore_config(saved["hyper_parameters"]["experiment"], overrides, trainer=False)
    loader = split_loader(config, None)
    assert report["samples"] == len(loader.dataset) == 12

    # activation sparsity: 1 - f_l per layer, and over all layers weighted by their neurons
    rates = our_firing_rates(backbone, loader)
    assert report["activation_sparsity_by_layer"].keys() == rates.keys() and len(rates) == 4
    for name, rate in rates.items():
        assert report["activation_sparsity_by_layer"][name] == pytest.approx(1 - rate, abs=1e-6)

    # effective ACs: the integer reference's spikes times fan-out on the same samples
    integer_model = fold(backbone, event_frames=config.data.name in EVENT_DATASETS)
    inputs = torch.cat([images for images, _ in loader])
    counted = reference.accumulates(integer_model, quantize_input(inputs, integer_model))
    assert counted > 0 and report["effective_acs"] * report["samples"] == pytest.approx(counted, rel=1e-12)

    # accuracy: qsnn test's on the same (whole) split
    assert report["accuracy"] == pytest.approx(evaluate_checkpoint(checkpoint, overrides)["test_acc"], abs=1e-6)

    # deployed footprint: qsnn footprint's figure for this architecture and bits at batch 1; the exported model_bytes
    (row,) = footprint_table([spec.arch], backbone.input_shape, backbone.num_classes, [Precision.parse(spec.bits)], [1])
    assert report["deployed_bytes"] == pytest.approx(row.megabytes * BYTES_PER_MB, rel=1e-12)
    assert report["deployed_model_bytes"] == pytest.approx(row.model_megabytes * BYTES_PER_MB, rel=1e-12)
    manifest = export_checkpoint(checkpoint, str(tmp_path / "export"), samples=0, overrides=overrides)
    assert report["exported_model_bytes"] == manifest["model_bytes"]



@pytest.mark.slow
def test_a_dvs_gesture_checkpoint_is_benched_on_tonics_files_or_told_where_they_go(tmp_path, capsys):
    """DVS-Gesture as NeuroBench's own benchmark read it (tonic's ``DVSGesture`` files; the loader
    left NeuroBench after 0.1.0): the test split's 3 samples, accuracy as ``qsnn test``'s; without the
    files, one line saying where they go, exit status 2, no neurobench.json."""
    write_dvs_gesture(tmp_path / "data")
    overrides = [f"data.data_dir={tmp_path / 'data'}", "data.download=false"]
    cfg = load_config("dvsgesture_mcu_1w2u", [*overrides, f"run_dir={tmp_path / 'runs'}", "data.batch_size=3", "trainer.max_epochs=1",
                                                "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"])
    checkpoint = train(cfg)["checkpoint"]
    capsys.readouterr()
    assert main(["bench", checkpoint, "--json", *overrides]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 3 and report["experiment"] == "dvsgesture_mcu_1w2u"
    assert report["accuracy"] == pytest.approx(evaluate_checkpoint(checkpoint, overrides)["test_acc"], abs=1e-6)
    results_path(checkpoint).unlink()
    capsys.readouterr()
    assert main(["bench", checkpoint, f"data.data_dir={tmp_path / 'nowhere'}", "data.download=false"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "DVSGesture/ibmGestureTest" in error and "extract both into <data_dir>/DVSGesture/" in error
    assert not results_path(checkpoint).exists()


@pytest.mark.slow
def test_a_run_with_neurobench_records_what_qsnn_bench_reports(tmp_path, capsys):
    """``neurobench: true``: results.json's ``neurobench`` holds, on the first ``neurobench_samples`` test
    samples, the very figures ``qsnn bench --samples`` gives of the checkpoint the run tested."""
    results, overrides = briefly_trained("fmnist_1w2u", tmp_path, "neurobench=true", "neurobench_samples=10")
    recorded = json.loads((Path(results["run_dir"]) / "results.json").read_text())["neurobench"]
    assert results["test_acc_checkpoint"] == "best" and results["checkpoint"].endswith("best.ckpt")
    capsys.readouterr()
    assert main(["bench", results["checkpoint"], "--samples", "10", "--json", *overrides]) == 0
    report = json.loads(capsys.readouterr().out)
    assert recorded["samples"] == 10 and recorded["effective_acs"] > 0
    assert set(report) - set(recorded) == {"checkpoint", "experiment", "arch", "bits"}
    assert recorded == {key: report[key] for key in recorded}


@pytest.mark.slow
def test_the_table_script_trains_what_is_missing_then_prints_a_row_per_run(tmp_path):
    """benchmarks/neurobench_table.py as a user runs it: one experiment trained with NeuroBench's
    figures recorded, its row in the table; a second call reads the run instead of training again."""
    data = write_fashion_mnist(tmp_path / "data", train=40, test=12)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "neurobench_table.py"
    command = [sys.executable, str(script), "--root", str(tmp_path / "runs"), "--samples", "6", "--experiments", "fmnist_1w2u",
               f"data.data_dir={data}", "data.download=false", "data.batch_size=8", "trainer.max_epochs=1",
               "trainer.accelerator=cpu", "speed.compile=false"]
    first, again = (subprocess.run(command, capture_output=True, text=True, timeout=600) for _ in range(2))
    assert first.returncode == 0 and again.returncode == 0, first.stderr[-3000:] + again.stderr[-3000:]
    (results,) = (tmp_path / "runs" / "fmnist_1w2u").glob("*/results.json")
    recorded = json.loads(results.read_text())
    (line,) = [line for line in again.stdout.splitlines() if line.startswith("| `fmnist_1w2u`")]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[1:4] == ["1w2u", "2", f"{100 * recorded['test_acc']:.2f}%"]
    assert cells[6] == f"{recorded['neurobench']['effective_acs']:,.0f}" and "$ train" not in again.stdout
