"""The package as users get it: a wheel installed away from the source tree trains packaged
experiments and a user's own YAML file; the spiking core and the exporter import only what they need."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dataset_files import write_fashion_mnist

pytestmark = pytest.mark.slow  # every test here trains, builds, benchmarks or measures a process

REPOSITORY = Path(__file__).resolve().parents[1]
FAST = ["trainer.fast_dev_run=true", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
        "data.batch_size=8", "data.download=false"]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """``pip wheel`` of the repository, installed with ``pip install --target`` into a folder of its own."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPOSITORY), "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(root / "dist")], check=True, capture_output=True)
    (wheel,) = (root / "dist").glob("qsnn_lightning-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(root / "site"),
                    str(wheel)], check=True, capture_output=True)
    return wheel, root / "site"


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m qsnn_lightning.cli ARGS`` with the installed wheel first on the path, from ``cwd``."""
    environment = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "qsnn_lightning.cli", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=600)


def test_wheel_holds_the_experiments_and_the_runtime(installed_wheel):
    wheel, _ = installed_wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("qsnn_lightning/experiments/base.yaml", "qsnn_lightning/experiments/fmnist_1w2u.yaml",
                 "qsnn_lightning/experiments/sweeps/lambda_k.yaml", "qsnn_lightning/snn/__init__.py",
                 "qsnn_lightning/training/config.py", "qsnn_lightning/export/runtime/include/qsnn.h",
                 "qsnn_lightning/export/runtime/src/qsnn.c"):
        assert name in names, name


def test_installed_wheel_trains_packaged_and_own_experiments_from_an_empty_folder(installed_wheel, tmp_path):
    _, site = installed_wheel
    data = write_fashion_mnist(tmp_path / "data", train=40, test=16)
    work = tmp_path / "empty"
    work.mkdir()
    where = run_installed(site, work, "experiments")
    assert where.returncode == 0 and "fmnist_1w2u" in where.stdout and str(site) in where.stdout, where.stderr

    packaged = run_installed(site, work, "train", "fmnist_1w2u", f"data.data_dir={data}", *FAST)
    assert packaged.returncode == 0, packaged.stderr[-3000:]
    assert (work / "runs" / "fmnist_1w2u").is_dir()

    (work / "my_exp.yaml").write_text("model:\n  bits: 1w4u\n  timesteps: 3\ntrainer:\n  max_epochs: 1\n")
    own = run_installed(site, work, "train", "./my_exp.yaml", f"data.data_dir={data}", "run_dir=out", *FAST)
    assert own.returncode == 0, own.stderr[-3000:]
    (run_dir,) = (work / "out" / "my_exp").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["experiment"], results["bits"], results["timesteps"]) == ("my_exp", "1w4u", 3)

    (work / "bad.yaml").write_text("model:\n  depth: 3\n")
    bad = run_installed(site, work, "train", "bad.yaml")
    assert bad.returncode == 2 and bad.stderr.startswith("qsnn: error: unknown config key 'model.depth'")
    assert len(bad.stderr.strip().splitlines()) == 1 and not (work / "runs" / "bad").exists()
