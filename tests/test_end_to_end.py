"""The fast tier's end-to-end path through the CLI, in this process on tiny Fashion-MNIST idx files:
``qsnn train`` (``fast_dev_run``, then one short epoch that writes checkpoints), ``qsnn test`` of the
checkpoint, and ``qsnn export`` to the host, whose C program, built by the export's own Makefile,
prints exactly the integer reference's lines. The full tier repeats these in real processes, on
real data, for every bit width and under sanitizers (test_train.py, test_export.py)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dataset_files import write_fashion_mnist
from qsnn_lightning.cli import main

QUIET = ["trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "data.batch_size=8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_fashion_mnist(tmp_path_factory.mktemp("fmnist"), train=40, test=16)


def test_fast_dev_run_trains_and_tests_one_batch(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "fmnist_1w2u", f"data.data_dir={data}", "run_dir=runs", "trainer.fast_dev_run=true", *QUIET]) == 0
    assert "fmnist_1w2u" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None, reason="gcc and make (Debian: build-essential)")
def test_train_test_and_export_to_the_host_bit_exact(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "fmnist_1w2u", f"data.data_dir={data}", "run_dir=runs", "trainer.max_epochs=1",
                 "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", *QUIET]) == 0
    (run_dir,) = Path("runs/fmnist_1w2u").iterdir()
    trained = json.loads((run_dir / "results.json").read_text())
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    assert main(["test", str(checkpoint), f"data.data_dir={data}", "trainer.enable_progress_bar=true"]) == 0
    printed = capsys.readouterr()
    assert 0 <= json.loads(printed.out)["test_acc"] <= 1, printed.out  # stdout holds only the JSON
    assert "Testing" in printed.err
    assert main(["export", str(checkpoint), "--out", "out", "--samples", "16", f"data.data_dir={data}"]) == 0
    manifest = json.loads(Path("out/manifest.json").read_text())
    assert manifest["bits"] == trained["bits"] == "1w2u" and manifest["samples"] == 16
    expected = Path("out/expected.txt").read_text().splitlines()
    assert len(expected) == 16
    check = subprocess.run(["make", "-s", "-C", "out", "check-host"], capture_output=True, text=True)  # cmp with expected.txt
    assert check.returncode == 0, check.stdout + check.stderr
