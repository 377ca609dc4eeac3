"""``qsnn train`` / ``qsnn test`` end to end on small Fashion-MNIST idx files, in real processes."""

import copy
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dataset_files import write_fashion_mnist

QSNN = str(Path(sys.executable).with_name("qsnn"))
SMALL_RUN = [
    "data.batch_size=16", "data.download=false", "trainer.max_epochs=2", "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
]


def qsnn(*args, cwd=None, timeout=600):
    return subprocess.run([QSNN, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def fmnist_dir(tmp_path_factory):
    return write_fashion_mnist(tmp_path_factory.mktemp("fmnist"), train=80, test=32)


@pytest.fixture(scope="module")
def finished_run(fmnist_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    result = qsnn("train", "fmnist_1w2u", f"data.data_dir={fmnist_dir}", f"run_dir={runs}", *SMALL_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (runs / "fmnist_1w2u").iterdir()
    return run_dir, result


@pytest.mark.slow
def test_train_writes_the_run_directory(finished_run):
    run_dir, result = finished_run
    assert "fmnist_1w2u: test accuracy" in result.stdout
    assert {"config.yaml", "metrics.csv", "results.json", "checkpoints"} <= {p.name for p in run_dir.iterdir()}
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    results = json.loads((run_dir / "results.json").read_text())
    assert results["bits"] == "1w2u" and results["epochs"] == 2 and 0 <= results["test_acc"] <= 1
    # binary 3x3 convs 16*32 + 32*64 + 64*64 (59,904 bits), 8-bit first conv (144) and fc
    # (5,760 + 10 fp32 biases), BatchNorm 2*(16+32+64+64) fp32: 14,840 bytes (the threshold membrane
    # scale is theta, no parameter; a learned one adds 4 fp32, one per spiking layer)
    assert results["model_megabytes"] == pytest.approx(0.014840)
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in ("train/loss_step", "train/loss_ce_step", "train/loss_spike_step", "val/acc", "val/acc_best",
                "test/acc", "train/firing_rate", "val/firing_rate"):
        assert key in header, key


@pytest.mark.slow
def test_checkpoint_loads_without_running_code_and_tests_again(finished_run):
    run_dir, _ = finished_run
    best = run_dir / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["experiment"]["name"] == "fmnist_1w2u"
    result = qsnn("test", str(best))
    assert result.returncode == 0, result.stderr[-2000:]
    tested = json.loads(result.stdout[result.stdout.index("{"):])
    saved = json.loads((run_dir / "results.json").read_text())
    assert tested["test_acc"] == pytest.approx(saved["test_acc"])


@pytest.mark.slow
def test_qsnn_test_honours_the_test_batch_limit(finished_run, monkeypatch):
    from qsnn_lightning.training.module import QSNNClassifier
    from qsnn_lightning.training.train import evaluate_checkpoint

    run_dir, _ = finished_run
    batches = []
    monkeypatch.setattr(QSNNClassifier, "test_step", lambda self, batch, index: batches.append(index))
    evaluate_checkpoint(str(run_dir / "checkpoints" / "best.ckpt"), ["data.batch_size=4", "trainer.limit_test_batches=2"])
    assert batches == [0, 1]  # of the 8 batches of the 32 test images


@pytest.mark.slow
def test_seeded_runs_repeat_and_resume_continues(finished_run, fmnist_dir, tmp_path):
    run_dir, _ = finished_run
    again = qsnn("train", "fmnist_1w2u", f"data.data_dir={fmnist_dir}", f"run_dir={tmp_path}", *SMALL_RUN)
    assert again.returncode == 0, again.stderr[-2000:]
    (second,) = (tmp_path / "fmnist_1w2u").iterdir()
    first_results = json.loads((run_dir / "results.json").read_text())
    second_results = json.loads((second / "results.json").read_text())
    assert second_results["test_acc"] == first_results["test_acc"]
    last = run_dir / "checkpoints" / "last.ckpt"
    resumed = qsnn("train", "fmnist_1w2u", f"data.data_dir={fmnist_dir}", f"run_dir={tmp_path}", f"ckpt_path={last}",
                   *SMALL_RUN[:2], "trainer.max_epochs=3", *SMALL_RUN[3:])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    newest = max((tmp_path / "fmnist_1w2u").iterdir())
    assert json.loads((newest / "results.json").read_text())["epochs"] == 3
    assert last.exists()  # the resumed run writes its own directory


@pytest.mark.slow
def test_bad_inputs_exit_2_in_one_line_and_keep_existing_files(finished_run, tmp_path):
    run_dir, _ = finished_run
    before = sorted(p.name for p in run_dir.rglob("*"))
    missing_data = qsnn("train", "fmnist_1w2u", f"data.data_dir={tmp_path / 'nowhere'}", "data.download=false",
                        f"run_dir={run_dir.parent.parent}")
    not_checkpoint = tmp_path / "weights.ckpt"
    torch.save({"weights": torch.zeros(3)}, not_checkpoint)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    for result, needle in (
        (missing_data, "Fashion-MNIST not found"),
        (qsnn("test", str(not_checkpoint)), "is not a qsnn-lightning checkpoint"),
        (qsnn("test", str(garbage)), "cannot be read safely"),
        (qsnn("test", str(tmp_path / "missing.ckpt")), "does not exist"),
        (qsnn("train", "dvsgesture_1w4u", f"data.data_dir={tmp_path / 'nowhere'}", "data.download=false"),
         "DVS-Gesture not found"),
    ):
        assert result.returncode == 2, result.stderr[-2000:]
        assert needle in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.name for p in run_dir.rglob("*")) == before


@pytest.mark.slow
def test_any_lightning_trainer_argument_reaches_the_trainer(tmp_path):
    data = write_fashion_mnist(tmp_path / "data", train=400, test=32)
    result = qsnn("train", "fmnist_1w2u", f"data.data_dir={data}", f"run_dir={tmp_path / 'runs'}", *SMALL_RUN[:2],
                  "trainer.max_steps=20", "trainer.accumulate_grad_batches=2", "trainer.val_check_interval=10",
                  "trainer.accelerator=cpu", "trainer.enable_progress_bar=false")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "fmnist_1w2u").iterdir()
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    (tested,) = [row for row in rows if row["test/acc"]]
    assert int(tested["step"]) == 20  # stopped after 20 optimizer steps of 2 accumulated batches
    validated = [(int(row["epoch"]), int(row["step"])) for row in rows if row["val/acc"]]
    assert validated[:2] == [(0, 4), (0, 9)]  # every 10 batches (5 steps), twice in the first epoch of 23


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(fmnist_dir, tmp_path):
    result = qsnn("train", "fmnist_1w2u", f"data.data_dir={fmnist_dir}", f"run_dir={tmp_path}", *SMALL_RUN[:2],
                  "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
                  "trainer.enable_progress_bar=false")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "fmnist_1w2u").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert 0 <= results["test_acc"] <= 1


def test_batchnorm_is_synchronized_across_gpu_processes_only(tmp_path):
    from lightning.pytorch.plugins import TorchSyncBatchNorm

    from qsnn_lightning.training.build import make_trainer, synchronizes_batchnorm
    from qsnn_lightning.training.config import load_config

    assert synchronizes_batchnorm("gpu") and synchronizes_batchnorm("cuda") and not synchronizes_batchnorm("cpu")
    assert synchronizes_batchnorm("auto") == torch.cuda.is_available()
    cfg = load_config("fmnist_1w2u", ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"])
    assert make_trainer(cfg, tmp_path).strategy._layer_sync is None
    if torch.cuda.is_available():
        cfg = load_config("fmnist_1w2u", ["trainer.accelerator=gpu", "trainer.devices=1", "trainer.strategy=ddp"])
        assert isinstance(make_trainer(cfg, tmp_path).strategy._layer_sync, TorchSyncBatchNorm)


@pytest.mark.slow
def test_tensorboard_logger_by_config(fmnist_dir, tmp_path):
    from qsnn_lightning.training.config import load_config
    from qsnn_lightning.training.train import train

    cfg = load_config("fmnist_1w2u", [
        f"data.data_dir={fmnist_dir}", f"run_dir={tmp_path}", "logger=tensorboard", "trainer.limit_train_batches=2",
        *SMALL_RUN[:2], "trainer.max_epochs=1", *SMALL_RUN[3:],
    ])
    run_dir = Path(train(cfg)["run_dir"])
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "metrics.csv").exists()  # CSV metrics are always written


@pytest.mark.slow
def test_speed_options_reach_the_model_not_the_lightning_trainer(fmnist_dir, tmp_path):
    from qsnn_lightning.data.modules import make_datamodule
    from qsnn_lightning.snn.neurons import spiking_layers
    from qsnn_lightning.training.build import make_module
    from qsnn_lightning.training.config import load_config
    from qsnn_lightning.training.train import train

    options = ["speed.channels_last=true", "model.neuron=reference", "speed.compile=true"]
    cfg = load_config("fmnist_1w2u", [f"data.data_dir={fmnist_dir}", *options])
    module = make_module(cfg, make_datamodule(cfg))
    assert all(layer.neuron == "reference" and layer.compile for layer in spiking_layers(module.model))
    assert module.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    cfg = load_config("fmnist_1w2u", [
        f"data.data_dir={fmnist_dir}", f"run_dir={tmp_path}", "trainer.limit_train_batches=2", *options[:2],
        *SMALL_RUN[:2], "trainer.max_epochs=1", *SMALL_RUN[3:],
    ])
    assert train(cfg)["test_acc"] is not None


@pytest.mark.slow
def test_resume_restores_epoch_and_optimizer_state(finished_run, fmnist_dir, tmp_path):
    from lightning.pytorch.callbacks import Callback

    from qsnn_lightning.data.modules import make_datamodule
    from qsnn_lightning.training.build import make_module, make_trainer
    from qsnn_lightning.training.config import load_config

    last = finished_run[0] / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    seen = {}

    class CaptureAtStart(Callback):
        def on_train_start(self, trainer, pl_module):
            seen["epoch"] = trainer.current_epoch
            seen["state"] = copy.deepcopy(trainer.optimizers[0].state_dict())  # training updates it in place

    cfg = load_config("fmnist_1w2u", [f"data.data_dir={fmnist_dir}", *SMALL_RUN[:2], "trainer.max_epochs=3",
                                      *SMALL_RUN[3:]])
    datamodule = make_datamodule(cfg)
    trainer = make_trainer(cfg, tmp_path)
    trainer.callbacks.append(CaptureAtStart())
    trainer.fit(make_module(cfg, datamodule), datamodule=datamodule, ckpt_path=str(last))
    assert saved["epoch"] == 1 and saved["global_step"] == 10  # the second epoch's 5 steps are in it
    assert seen["epoch"] == 2
    saved_state = saved["optimizer_states"][0]["state"]
    assert saved_state and set(seen["state"]["state"]) == set(saved_state)
    for key, buffers in saved_state.items():  # Adam's exp_avg, exp_avg_sq and step (SGD: momentum_buffer)
        assert buffers and set(seen["state"]["state"][key]) == set(buffers)
        for name, value in buffers.items():
            assert torch.equal(seen["state"]["state"][key][name], value), (key, name)


@pytest.mark.slow
def test_wandb_without_a_key_runs_offline_into_the_run_directory(fmnist_dir, tmp_path, monkeypatch):
    from qsnn_lightning.training.config import load_config
    from qsnn_lightning.training.train import train

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no key
    cfg = load_config("fmnist_1w2u", [
        f"data.data_dir={fmnist_dir}", f"run_dir={tmp_path / 'runs'}", "logger=wandb", "trainer.limit_train_batches=2",
        *SMALL_RUN[:2], "trainer.max_epochs=1", *SMALL_RUN[3:],
    ])
    run_dir = Path(train(cfg)["run_dir"])
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline.glob("*.wandb"))  # the run's metrics, for `wandb sync`
    assert (run_dir / "metrics.csv").exists()


def old_format(checkpoint: dict) -> dict:
    """A checkpoint as earlier versions wrote it: the model options as flat hyperparameters, the
    speed options as ``trainer.*`` keys of the saved configuration (no ``speed`` section)."""
    hparams = copy.deepcopy(checkpoint["hyper_parameters"])
    experiment = hparams.pop("experiment")
    speed = experiment.pop("speed")
    experiment["trainer"].update(speed)
    experiment["model"].pop("input_bits")  # added later: unset means 8 bits in a quantized network
    flat = {**hparams.pop("spec"), **hparams, "experiment": experiment}
    flat.pop("input_bits")
    return {"epoch": checkpoint["epoch"], "global_step": checkpoint["global_step"], "hparams_name": "kwargs",
            "state_dict": checkpoint["state_dict"], "hyper_parameters": flat}


@pytest.mark.slow
def test_checkpoint_holds_the_model_spec_once(finished_run):
    from dataclasses import fields

    from qsnn_lightning.snn.spec import ModelSpec

    run_dir, _ = finished_run
    hparams = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["hyper_parameters"]
    names = {field.name for field in fields(ModelSpec)}
    assert isinstance(hparams["spec"], dict) and set(hparams["spec"]) == names
    assert not names & (set(hparams) - {"spec"})  # no model option twice
    assert ModelSpec.from_dict(hparams["spec"]) == ModelSpec(**hparams["experiment"]["model"])


@pytest.mark.slow
def test_checkpoints_of_earlier_versions_test_and_export(finished_run, tmp_path):
    from qsnn_lightning.checkpoint import read_checkpoint
    from qsnn_lightning.errors import CheckpointError
    from qsnn_lightning.training.checkpoint import module_from_checkpoint

    run_dir, _ = finished_run
    best = run_dir / "checkpoints" / "best.ckpt"
    current = torch.load(best, map_location="cpu", weights_only=True)
    old = tmp_path / "old.ckpt"
    torch.save(old_format(current), old)
    assert "spec" not in torch.load(old, weights_only=True)["hyper_parameters"]

    module = module_from_checkpoint(read_checkpoint(str(old)))
    assert module.spec == module_from_checkpoint(read_checkpoint(str(best))).spec
    assert module.hparams.spec == current["hyper_parameters"]["spec"]
    assert all(torch.equal(value, current["state_dict"][key]) for key, value in module.state_dict().items())

    result = qsnn("test", str(old))
    assert result.returncode == 0, result.stderr[-2000:]
    tested = json.loads(result.stdout[result.stdout.index("{"):])
    assert tested["test_acc"] == pytest.approx(json.loads((run_dir / "results.json").read_text())["test_acc"])

    for checkpoint, out in ((old, tmp_path / "old_export"), (best, tmp_path / "export")):
        result = qsnn("export", str(checkpoint), "--out", str(out), "--samples", "2")
        assert result.returncode == 0, result.stderr[-2000:]
        manifest = json.loads((out / "manifest.json").read_text())
        assert (manifest["arch"], manifest["bits"], manifest["membrane_bits"]) == ("fmnistnet", "1w2u", 2)

    unknown = old_format(current)
    unknown["hyper_parameters"]["membrane_leak"] = 0.1  # a model option this version does not know
    torch.save(unknown, tmp_path / "unknown.ckpt")
    with pytest.raises(CheckpointError, match="model settings cannot be built by this version"):
        module_from_checkpoint(read_checkpoint(str(tmp_path / "unknown.ckpt")))
    result = qsnn("test", str(tmp_path / "unknown.ckpt"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert "membrane_leak" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_input_quantizer_off_trains_and_its_export_is_refused_naming_the_setting(fmnist_dir, tmp_path):
    off = ["model.input_bits=32", f"data.data_dir={fmnist_dir}", *SMALL_RUN[:2], "trainer.accelerator=cpu",
           "trainer.enable_progress_bar=false"]
    fast = qsnn("train", "fmnist_1w2u", *off, "trainer.fast_dev_run=true", f"run_dir={tmp_path / 'fast'}")
    assert fast.returncode == 0 and "test accuracy" in fast.stdout, fast.stderr[-2000:]
    brief = qsnn("train", "fmnist_1w2u", *off, "trainer.max_epochs=1", "trainer.limit_train_batches=1", f"run_dir={tmp_path / 'runs'}")
    assert brief.returncode == 0, brief.stderr[-2000:]
    (last,) = (tmp_path / "runs").glob("fmnist_1w2u/*/checkpoints/last.ckpt")
    assert torch.load(last, map_location="cpu", weights_only=True)["hyper_parameters"]["spec"]["input_bits"] == 32
    refused = qsnn("export", str(last), "--out", str(tmp_path / "out"))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-2000:]
    assert "found 32: train with model.input_bits=8" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def whole_training_set_run(fmnist_dir, tmp_path_factory):
    """The Table 1 protocol on the small files: no validation split, the test split every epoch."""
    runs = tmp_path_factory.mktemp("runs")
    result = qsnn("train", "fmnist_1w2u", f"data.data_dir={fmnist_dir}", f"run_dir={runs}", "data.val_fraction=0",
                  "test_every_epoch=true", *SMALL_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (runs / "fmnist_1w2u").iterdir()
    return run_dir, result


def epoch_test_accuracies(run_dir: Path) -> list[tuple[int, float]]:
    rows = csv.DictReader((run_dir / "metrics.csv").open())
    return [(int(row["epoch"]), float(row["test/acc_epoch"])) for row in rows if row["test/acc_epoch"]]


@pytest.mark.slow
def test_without_validation_the_last_weights_are_tested_beside_the_best_epoch(whole_training_set_run):
    run_dir, result = whole_training_set_run
    results = json.loads((run_dir / "results.json").read_text())
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"last.ckpt"}  # no best-by-validation checkpoint
    assert results["test_acc_checkpoint"] == "last" and results["val_acc_best"] is None
    assert results["checkpoint"] == str(run_dir / "checkpoints" / "last.ckpt")
    per_epoch = epoch_test_accuracies(run_dir)
    assert [epoch for epoch, _ in per_epoch] == [0, 1]
    assert results["test_acc"] == pytest.approx(per_epoch[-1][1])  # the last epoch's weights, tested twice
    best = max(per_epoch, key=lambda item: item[1])  # the first epoch of the maximum
    assert (results["test_best_epoch"], results["test_acc_best_epoch"]) == pytest.approx(best)
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert not [key for key in header if key.startswith("val/")]  # the test split never logs as validation
    assert {"test/loss_epoch", "test/firing_rate_epoch", "test/acc", "test/loss"} <= set(header)
    assert f"fmnist_1w2u: test accuracy {results['test_acc']:.4f} (last epoch's weights)" in result.stdout
    assert f"best per-epoch test accuracy {results['test_acc_best_epoch']:.4f} (epoch {best[0]}, selected on the test set" \
        in result.stdout
    tested = qsnn("test", results["checkpoint"])
    assert tested.returncode == 0, tested.stderr[-2000:]
    assert json.loads(tested.stdout[tested.stdout.index("{"):])["test_acc"] == pytest.approx(results["test_acc"])


@pytest.mark.slow
def test_resume_keeps_the_best_epoch_of_the_interrupted_run(whole_training_set_run, fmnist_dir, tmp_path):
    run_dir, _ = whole_training_set_run
    resumed = qsnn("train", "fmnist_1w2u", f"data.data_dir={fmnist_dir}", f"run_dir={tmp_path}", "data.val_fraction=0",
                   "test_every_epoch=true", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", *SMALL_RUN[:2],
                   "trainer.max_epochs=3", *SMALL_RUN[3:])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (second,) = (tmp_path / "fmnist_1w2u").iterdir()
    per_epoch = epoch_test_accuracies(run_dir) + epoch_test_accuracies(second)
    assert [epoch for epoch, _ in per_epoch] == [0, 1, 2]
    results = json.loads((second / "results.json").read_text())
    assert (results["test_best_epoch"], results["test_acc_best_epoch"]) == pytest.approx(max(per_epoch, key=lambda item: item[1]))


@pytest.mark.slow
def test_validation_monitors_read_the_validation_split_only(fmnist_dir, tmp_path):
    from qsnn_lightning.snn.backbones import build_model
    from qsnn_lightning.snn.footprint import spiking_layer_sizes
    from qsnn_lightning.snn.spec import ModelSpec
    from qsnn_lightning.training.config import load_config
    from qsnn_lightning.training.train import train

    cfg = load_config("fmnist_1w2u", [f"data.data_dir={fmnist_dir}", f"run_dir={tmp_path}", "test_every_epoch=true",
                                      *SMALL_RUN[:2], "trainer.max_epochs=1", *SMALL_RUN[3:]])
    results = train(cfg)
    assert results["test_acc_checkpoint"] == "best" and results["test_acc_best_epoch"] is not None
    assert results["val_acc_best"] is not None
    (levels,) = (Path(results["run_dir"]) / "membrane_levels.jsonl").read_text().splitlines()
    counts = json.loads(levels)["layers"]
    sizes = spiking_layer_sizes(build_model(ModelSpec(**cfg.model), input_shape=(1, 28, 28)), (1, 28, 28))
    validation_samples, steps = 8, cfg.model.timesteps  # 10% of the 80 training images; the 32 test images not counted
    assert [sum(layer) for layer in counts.values()] == [validation_samples * steps * size for size in sizes]
