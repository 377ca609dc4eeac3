"""SIGINT and SIGTERM during a run: recorded, turned into KeyboardInterrupt, and told in one line
with the command that resumes (the real signals through the CLI are in test_resume.py)."""

import os
import signal
import sys

import pytest
from omegaconf import OmegaConf

from qsnn_lightning.training.interrupts import StopOnSignal, interrupted, signals_recorded


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_is_recorded_stops_at_the_batch_end_a_second_at_once(signum):
    before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt), signals_recorded() as received:
        os.kill(os.getpid(), signum)  # recorded; the run goes on to the end of its batch
        assert received == [signum]
        with pytest.raises(KeyboardInterrupt):
            StopOnSignal().on_train_batch_end(None, None, None, None, 0)
        os.kill(os.getpid(), signum)  # the second: at once
    assert received == [signum, signum]
    assert signal.getsignal(signum) is before


def test_the_line_names_the_last_checkpoint_and_the_command_that_resumes(tmp_path, monkeypatch):
    cfg = OmegaConf.create({"name": "fmnist_1w2u"})
    monkeypatch.setattr(sys, "argv", ["qsnn", "train", "fmnist_1w2u", "optim.lr=0.05"])
    error = interrupted(signal.SIGTERM, cfg, tmp_path)
    assert str(error) == "stopped by SIGTERM before the first checkpoint; nothing was kept" and error.exit_status == 143
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"saved")
    error = interrupted(signal.SIGINT, cfg, tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert str(error) == (f"stopped by SIGINT; the last checkpoint is {last}: resume with qsnn train fmnist_1w2u "
                          f"optim.lr=0.05 ckpt_path={last}")
    assert error.exit_status == 130


def test_a_resumed_run_stopped_again_is_told_one_ckpt_path(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"saved")
    monkeypatch.setattr(sys, "argv", ["qsnn", "train", "fmnist_1w2u", "ckpt_path=old/last.ckpt", "seed=1"])
    line = str(interrupted(signal.SIGINT, OmegaConf.create({"name": "fmnist_1w2u"}), tmp_path))
    assert line.endswith(f"resume with qsnn train fmnist_1w2u seed=1 ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}")
