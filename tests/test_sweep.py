"""Sweeps from W&B sweep files: the lambda/k grid, the local runner (one run per point, summary CSV
and plot, resumable) and the wiring of the online runner to ``wandb sweep`` / ``wandb agent``."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_files import write_fashion_mnist
from qsnn_lightning.snn.precision import Precision
from qsnn_lightning.training import sweep as sweeps
from qsnn_lightning.training.config import load_config
from qsnn_lightning.training.sweep import SweepError, load_sweep, point_directory_name, run_local, run_wandb

QSNN = str(Path(sys.executable).with_name("qsnn"))


@pytest.fixture(scope="module")
def tiny_budget(tmp_path_factory):
    data = write_fashion_mnist(tmp_path_factory.mktemp("fmnist"), train=24, test=8)
    return [
        f"data.data_dir={data}", "data.download=false", "data.batch_size=8", "data.val_fraction=0.34",
        "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
    ]


def write_sweep(path: Path, lams=(0.0, 0.01), bits=("1w2u", "1w4u")) -> Path:
    path.write_text(
        "name: small\nmethod: grid\nmetric: {name: test/acc, goal: maximize}\nparameters:\n"
        f"  loss.lam: {{values: {list(lams)}}}\n  model.bits: {{values: {list(bits)}}}\n"
        "command: [\"${env}\", qsnn, train, fmnist_1w2u, logger=wandb, model.timesteps=1, \"${args_no_hyphens}\"]\n"
    )
    return path


def test_lambda_k_is_the_grid_of_the_issue_on_a_real_experiment():
    sweep = load_sweep("lambda_k")
    points = sweep.points()
    assert len(points) == 12
    assert {point["loss.lam"] for point in points} == {0.0, 1e-4, 1e-3, 1e-2}
    assert {Precision.parse(point["model.bits"]).membrane_bits for point in points} == {2, 4, 8}
    assert {Precision.parse(point["model.bits"]).weight_bits for point in points} == {1}
    assert sweep.experiment == "fmnist_1w2u" and sweep.fixed == ("logger=wandb",)
    for point in points:  # every point is a valid configuration carrying its values
        cfg = load_config(sweep.experiment, sweeps.point_overrides(point))
        assert cfg.loss.lam == point["loss.lam"] and cfg.model.bits == point["model.bits"]


@pytest.mark.slow
def test_local_sweep_runs_each_point_once_and_resumes_after_an_interruption(tmp_path, tiny_budget, monkeypatch):
    sweep = load_sweep(str(write_sweep(tmp_path / "small.yaml")))
    assert sweep.fixed == ("logger=wandb", "model.timesteps=1")
    from qsnn_lightning.training import sweep as sweeping

    real_train, calls = sweeping.train, []

    def interrupted_at_third_point(cfg):
        calls.append((cfg.loss.lam, cfg.model.bits, cfg.logger, cfg.model.timesteps))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train(cfg)

    monkeypatch.setattr(sweeping, "train", interrupted_at_third_point)
    with pytest.raises(KeyboardInterrupt):
        run_local(sweep, tiny_budget, tmp_path / "sweeps", log=lambda line: None)
    # grid order, the command's fixed overrides applied, logging CSV locally
    assert calls == [(0.0, "1w2u", "csv", 1), (0.0, "1w4u", "csv", 1), (0.01, "1w2u", "csv", 1)]

    calls.clear()
    monkeypatch.setattr(sweeping, "train", lambda cfg: calls.append((cfg.loss.lam, cfg.model.bits)) or real_train(cfg))
    rows = run_local(sweep, tiny_budget, tmp_path / "sweeps", log=lambda line: None)
    assert calls == [(0.01, "1w2u"), (0.01, "1w4u")]  # the two finished points are not rerun
    summary = list(csv.DictReader(open(tmp_path / "sweeps" / "small" / "summary.csv")))
    assert [(float(row["loss.lam"]), row["model.bits"], int(row["k"])) for row in summary] == [
        (0.0, "1w2u", 2), (0.0, "1w4u", 4), (0.01, "1w2u", 2), (0.01, "1w4u", 4)]
    for row, returned in zip(summary, rows):
        assert 0.0 <= float(row["test_acc"]) <= 1.0 and float(row["test_acc"]) == pytest.approx(returned["test_acc"])
        # fmnistnet has 4 spiking layers; the 2 hidden ones are those Eq. 15 regularizes
        rates = list(__import__("json").loads((Path(row["run_dir"]) / "results.json").read_text())["val_firing_rates"].values())
        assert float(row["hidden_firing_rate"]) == pytest.approx(sum(rates[1:3]) / 2)
        assert Path(row["run_dir"]).is_relative_to(tmp_path / "sweeps" / "small")
    assert (tmp_path / "sweeps" / "small" / "accuracy_vs_lam.png").stat().st_size > 0

    calls.clear()
    run_local(sweep, tiny_budget, tmp_path / "sweeps", log=lambda line: None)
    assert calls == []


@pytest.mark.slow
def test_an_interrupted_point_continues_from_its_last_checkpoint(tmp_path, tiny_budget, monkeypatch):
    sweep = load_sweep(str(write_sweep(tmp_path / "small.yaml", lams=(0.0,), bits=("1w2u",))))
    (row,) = run_local(sweep, tiny_budget, tmp_path / "sweeps", log=lambda line: None)
    run_dir = Path(row["run_dir"])
    (run_dir / "results.json").unlink()  # as if stopped after the last epoch's checkpoint
    from qsnn_lightning.training import sweep as sweeping

    real_train, resumed_from = sweeping.train, []
    monkeypatch.setattr(sweeping, "train", lambda cfg: resumed_from.append(cfg.ckpt_path) or real_train(cfg))
    (again,) = run_local(sweep, tiny_budget, tmp_path / "sweeps", log=lambda line: None)
    assert resumed_from == [str(run_dir / "checkpoints" / "last.ckpt")]
    assert Path(again["run_dir"]) != run_dir and (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_a_sweep_directory_is_not_mixed_with_other_overrides(tmp_path, tiny_budget):
    sweep = load_sweep(str(write_sweep(tmp_path / "small.yaml", lams=(0.0,), bits=("1w2u",))))
    run_local(sweep, tiny_budget, tmp_path / "sweeps", log=lambda line: None)
    with pytest.raises(SweepError, match="same overrides"):
        run_local(sweep, [*tiny_budget, "optim.lr=0.01"], tmp_path / "sweeps")


def test_bad_points_are_refused_before_anything_runs(tmp_path, tiny_budget):
    sweep = load_sweep(str(write_sweep(tmp_path / "small.yaml", bits=("1w2u", "1w3x"))))
    with pytest.raises(ValueError, match="model.bits"):
        run_local(sweep, tiny_budget, tmp_path / "sweeps")
    assert not (tmp_path / "sweeps").exists()


def test_online_sweep_registers_once_and_resumes_with_the_agent(tmp_path, monkeypatch):
    import wandb

    registered, agents = [], []
    monkeypatch.setattr("qsnn_lightning.training.sweep.has_wandb_key", lambda: True)
    monkeypatch.setattr(wandb, "sweep", lambda sweep, project: registered.append((sweep, project)) or "abc123")
    monkeypatch.setattr(subprocess, "run", lambda command, env: agents.append((command, env)) or subprocess.CompletedProcess(command, 0))
    sweep = load_sweep("lambda_k")
    assert run_wandb(sweep, ["trainer.max_epochs=3"], tmp_path) == "abc123"
    ((config, project),) = registered
    assert project == "qsnn-lightning" and config["method"] == "grid"
    assert config["command"][-3:] == ["logger=wandb", "trainer.max_epochs=3", "${args_no_hyphens}"]
    command, env = agents[0]
    assert command[1:] == ["agent", "--project", "qsnn-lightning", "abc123"]
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)  # the agent finds this qsnn
    assert run_wandb(sweep, [], tmp_path) == "abc123" and len(registered) == 1 and len(agents) == 2


def run_cli(*args, home):
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(home)}
    return subprocess.run([QSNN, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (("sweep", "nope", "--local"), "unknown sweep 'nope'; choose one of lambda_k"),
    (("sweep", "lambda_k"), "W&B sweeps need an API key and network"),
    (("sweep", "lambda_k", "--local", "loss.lamda=1"), "unknown config key 'loss.lamda'"),
])
def test_cli_refuses_in_one_line(tmp_path, args, message):
    result = run_cli(*args, home=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_point_directories_are_named_by_their_overrides():
    assert point_directory_name({"loss.lam": 0.001, "model.bits": "1w2u"}) == "loss.lam=0.001__model.bits=1w2u"


def test_summary_plot_takes_named_values_of_the_first_parameter(tmp_path):
    """membrane_scale's first parameter is a name (max, tanh, ...): one tick per name, no float()."""
    from qsnn_lightning.training.sweep import plot_summary

    rows = [{"model.membrane_scale": scale, "model.bits": bits, "test_acc": 0.8, "hidden_firing_rate": 0.2}
            for scale in ("max", "threshold") for bits in ("1w2u", "1w4u")]
    path = plot_summary(rows, ["model.membrane_scale", "model.bits"], tmp_path)
    assert path.name == "accuracy_vs_membrane_scale.png" and path.stat().st_size > 0


def test_a_truncated_point_result_counts_as_unfinished(tmp_path):
    finished = tmp_path / "point" / "fmnist_1w2u" / "20261203-100000"
    finished.mkdir(parents=True)
    (finished / "results.json").write_text('{"test_acc": 0.5, "run_dir": "x"}\n')
    assert sweeps._finished_results(tmp_path / "point")["test_acc"] == 0.5
    (finished / "results.json").write_text('{"test_acc": 0.')  # the write was cut off
    assert sweeps._finished_results(tmp_path / "point") is None


def test_the_sweep_folder_follows_dir_then_run_dir():
    assert sweeps.sweep_root(None, []) == Path("runs/sweeps")
    assert sweeps.sweep_root(None, ["run_dir=/scratch/me", "loss.lam=0"]) == Path("/scratch/me/sweeps")
    assert sweeps.sweep_root("elsewhere", ["run_dir=/scratch/me"]) == Path("elsewhere")


def test_qsnn_sweep_local_puts_its_grid_under_run_dir(tmp_path, monkeypatch):
    from qsnn_lightning import cli

    roots = []
    monkeypatch.setattr(cli, "run_local", lambda sweep, overrides, root: roots.append(root) or [])
    assert cli.main(["sweep", "lambda_k", "--local", f"run_dir={tmp_path}"]) == 0
    assert roots == [tmp_path / "sweeps"]


def test_the_summary_carries_effective_acs_where_points_measured_them(tmp_path):
    """Points whose results.json holds ``neurobench`` (``neurobench: true``) put their effective ACs per
    sample in summary.csv; a point run without it leaves the column empty; no point trains again."""
    sweep = sweeps.Sweep("lams", "fmnist_1w2u", (), {"loss.lam": [0.0, 0.001, 0.01]}, {})
    measured = {0.0: 859584.0, 0.001: 412345.5}  # 0.01 was run without neurobench: true
    for lam in sweep.parameters["loss.lam"]:
        run_dir = tmp_path / "lams" / point_directory_name({"loss.lam": lam}) / "fmnist_1w2u" / "20261203-100000"
        run_dir.mkdir(parents=True)
        results = {"bits": "1w2u", "test_acc": 0.5, "val_acc_best": 0.5, "run_dir": str(run_dir),
                   "val_firing_rates": {"stem": 0.3, "hidden": 0.2, "head": 0.1}}
        if lam in measured:
            results["neurobench"] = {"effective_acs": measured[lam], "accuracy": 0.5}
        (run_dir / "results.json").write_text(json.dumps(results))
    rows = run_local(sweep, [], tmp_path, log=lambda line: None)
    assert [row.get("effective_acs") for row in rows] == [859584.0, 412345.5, None]
    with open(tmp_path / "lams" / sweeps.SUMMARY, newline="") as file:
        written = list(csv.DictReader(file))
    assert [row["effective_acs"] for row in written] == ["859584.0", "412345.5", ""]
    assert list(written[0]).index("effective_acs") == list(written[0]).index("hidden_firing_rate") + 1
