"""notebooks/spike_distributions.ipynb runs top to bottom (papermill) on runs made here: a WS-DR
and a plain Q-SNN run and a sweep summary, and draws every figure from them."""

from pathlib import Path

import papermill
import pytest

from dataset_files import write_fashion_mnist
from qsnn_lightning.training.analysis import read_run, read_summary
from qsnn_lightning.training.config import load_config
from qsnn_lightning.training.sweep import summary_row, write_summary
from qsnn_lightning.training.train import train

pytestmark = pytest.mark.slow  # every test here trains, builds, benchmarks or measures a process

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "spike_distributions.ipynb"


def test_notebook_runs_on_a_wsdr_and_a_plain_run_and_a_sweep_summary(tmp_path):
    data = write_fashion_mnist(tmp_path / "data", train=24, test=8)
    tiny = [f"data.data_dir={data}", "data.download=false", "data.batch_size=8", "data.val_fraction=0.34",
            "trainer.max_epochs=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
            f"run_dir={tmp_path / 'runs'}"]
    wsdr = train(load_config("fmnist_1w2u", tiny))
    plain = train(load_config("fmnist_1w2u_nowsdr", tiny))
    rows = [summary_row({"loss.lam": lam, "model.bits": "1w2u"}, results)
            for lam, results in ((1e-3, wsdr), (0.0, plain))]
    write_summary(rows, tmp_path / "summary.csv")

    run = read_run(wsdr["run_dir"])
    assert [epoch for epoch, _ in run.history("val/acc")] == [0, 1]
    assert run.history("test/acc") == [(2, wsdr["test_acc"])]  # Lightning logs the test after the last epoch
    assert run.layers("val/firing_rate") == list(wsdr["val_firing_rates"])  # forward order, from the checkpoint
    assert run.last("val/firing_rate") == wsdr["val_firing_rates"]
    assert [row["test_acc"] for row in read_summary(tmp_path / "summary.csv")] == [wsdr["test_acc"], plain["test_acc"]]

    figures = tmp_path / "figures"
    executed = papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "executed.ipynb"), kernel_name="python3", progress_bar=False,
        parameters={"run_dirs": {"WS-DR": wsdr["run_dir"], "plain": plain["run_dir"]},
                    "sweep_summary": str(tmp_path / "summary.csv"), "figure_dir": str(figures)},
    )
    expected = {"firing_rates", "sign_balance", "membrane_levels", "training_curves", "sweep"}
    assert {path.stem for path in figures.glob("*.png")} == expected
    printed = "".join(output.get("text", "") for cell in executed.cells for output in cell.get("outputs", []))
    first_layer, rate = next(iter(wsdr["val_firing_rates"].items()))
    assert f"'{first_layer}': {round(rate, 3)}" in printed  # the rates the notebook plots are the run's
