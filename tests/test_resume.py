"""Resume means resume: a run continued from ``last.ckpt`` ends with the same weights, to the bit,
as the run that was never interrupted; a checkpoint of another run is refused in one line."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dataset_files import write_fashion_mnist

pytestmark = pytest.mark.slow  # every test here trains, builds, benchmarks or measures a process

QSNN = str(Path(sys.executable).with_name("qsnn"))
RUN = ["data.batch_size=16", "data.download=false", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
       "check_memory=false"]


def train(data: Path, run_dir: Path, *overrides: str, experiment: str = "fmnist_1w2u") -> subprocess.CompletedProcess:
    return subprocess.run([QSNN, "train", experiment, f"data.data_dir={data}", f"run_dir={run_dir}", *RUN, *overrides],
                          capture_output=True, text=True, timeout=900)


def last_checkpoint(run_dir: Path, experiment: str = "fmnist_1w2u") -> Path:
    (path,) = (run_dir / experiment).glob("*/checkpoints/last.ckpt")
    return path


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_bit_identical(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    differing = [key for key in first if not torch.equal(first[key], second[key])]
    assert not differing, differing


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_fashion_mnist(tmp_path_factory.mktemp("fmnist"), train=80, test=16)  # 5 batches per epoch


def test_resumed_run_ends_bit_identical_to_the_uninterrupted_one(data, tmp_path):
    whole = train(data, tmp_path / "whole", "trainer.max_epochs=2")
    first_half = train(data, tmp_path / "first", "trainer.max_epochs=2", "trainer.max_steps=5")  # stops after epoch 0
    assert whole.returncode == 0 and first_half.returncode == 0, whole.stderr[-2000:] + first_half.stderr[-2000:]
    stopped = last_checkpoint(tmp_path / "first")
    assert torch.load(stopped, weights_only=True)["epoch"] == 0
    resumed = train(data, tmp_path / "resumed", "trainer.max_epochs=2", f"ckpt_path={stopped}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_bit_identical(weights(last_checkpoint(tmp_path / "whole")), weights(last_checkpoint(tmp_path / "resumed")))


@pytest.fixture(scope="module")
def one_batch_run(data, tmp_path_factory) -> Path:
    """The last checkpoint of an fmnist_1w2u run of one batch."""
    run_dir = tmp_path_factory.mktemp("first")
    first = train(data, run_dir, "trainer.max_epochs=1", "trainer.limit_train_batches=1")
    assert first.returncode == 0, first.stderr[-2000:]
    return last_checkpoint(run_dir)


@pytest.mark.parametrize("overrides, experiment, needle", [
    (["model.bits=1w8u"], "fmnist_1w2u", "was trained with model.bits=1w2u, this run has model.bits=1w8u"),
    (["model.timesteps=4"], "fmnist_1w2u", "was trained with model.timesteps=2, this run has model.timesteps=4"),
    ([], "fmnist_fp", "was trained with name=fmnist_1w2u, this run has name=fmnist_fp"),
])
def test_resume_from_another_run_is_refused_in_one_line(data, one_batch_run, tmp_path, overrides, experiment, needle):
    refused = train(data, tmp_path / "other", f"ckpt_path={one_batch_run}", *overrides, experiment=experiment)
    assert refused.returncode == 2 and needle in refused.stderr and "check_resume=false" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "other").exists()


EPOCHS = "trainer.max_epochs=3"


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    """1,000 images (57 batches an epoch, so a signal lands mid-epoch) and the uninterrupted run's weights."""
    folder = tmp_path_factory.mktemp("thousand")
    data = write_fashion_mnist(folder / "data", train=1000, test=16)
    whole = train(data, folder / "whole", EPOCHS)
    assert whole.returncode == 0, whole.stderr[-2000:]
    return data, weights(last_checkpoint(folder / "whole"))


@pytest.mark.parametrize("signum, status", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_run_stopped_in_its_second_epoch_resumes_to_the_same_weights(thousand, tmp_path, signum, status):
    """kill -9, Ctrl-C and a scheduler's SIGTERM: the last checkpoint is whole and resumes to the bit;
    SIGINT and SIGTERM also stop with 128 + the signal and one line saying how to resume."""
    data, whole = thousand
    command = [QSNN, "train", "fmnist_1w2u", f"data.data_dir={data}", f"run_dir={tmp_path / 'stopped'}", *RUN, EPOCHS]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not list((tmp_path / "stopped").glob("fmnist_1w2u/*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # into the second epoch
    process.send_signal(signum)
    error = process.communicate(timeout=60)[1]
    assert process.returncode == status, error[-2000:]
    saved = last_checkpoint(tmp_path / "stopped")
    assert torch.load(saved, weights_only=True)["epoch"] < 2
    if signum != signal.SIGKILL:
        last = error.strip().splitlines()[-1]
        assert "Traceback" not in error and last.startswith(f"qsnn: error: stopped by {signum.name}; the last checkpoint is "), error
        assert last.endswith(f"ckpt_path={saved}") and "qsnn train fmnist_1w2u" in last
    resumed = train(data, tmp_path / "resumed", EPOCHS, f"ckpt_path={saved}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_bit_identical(whole, weights(last_checkpoint(tmp_path / "resumed")))
