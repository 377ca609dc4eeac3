"""Run an experiment: DataModule, QSNNClassifier and Trainer built from a validated config
(``build.py``), fit, test the kept weights and write ``results.json``; or test a saved checkpoint.

A run writes to ``<run_dir>/<experiment>/<timestamp>/``: ``config.yaml``, ``checkpoints/``
(``best.ckpt`` by ``val/acc`` when there is a validation split, ``last.ckpt``), ``metrics.csv``, and
``results.json``: ``test_acc``, the test accuracy of the best-validation checkpoint, or of the last
weights without a validation split (``data.val_fraction=0``), which ``test_acc_checkpoint`` names
(``"best"`` | ``"last"``); with ``test_every_epoch``, ``test_acc_best_epoch``, the highest per-epoch
test accuracy (how the authors' release selects its number: on the test set) and ``test_best_epoch``,
its epoch (0-based, as in ``metrics.csv``); the best validation accuracy; and the last validation
epoch's firing rate per layer; with ``neurobench: true``, ``neurobench``: ``qsnn bench``'s figures
of the tested weights (``bench_record.py``).
"""

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from ..checkpoint import read_checkpoint
from ..data.modules import make_datamodule
from ..errors import ConfigError, one_line
from ..files import atomic_open
from .atomic_checkpoints import disk_full
from .bench_record import check_neurobench_samples, neurobench_figures, require_neurobench
from .build import (
    BEST_MONITOR,
    check_trainer_settings,
    check_validation_interval,
    make_module,
    make_test_trainer,
    make_trainer,
    ready_datamodule,
)
from .callbacks import SpikeMonitor
from .checkpoint import check_resumable, module_from_checkpoint
from .config import refuse_model_overrides, restore_config
from .epoch_test import WithEpochTest
from .host_memory import return_freed_memory, reuse_freed_memory
from .interrupts import interrupted, signals_recorded
from .memory_check import choose_activation_memory

RUN_DIR_ENV = "QSNN_RUN_DIR"  # shared with the processes a DDP launcher starts
ACTIVATION_MEMORY_ENV = "QSNN_ACTIVATION_MEMORY"  # the path the launcher chose, for the processes it starts


def _new_run_directory(cfg: DictConfig) -> Path:
    """Create and return a fresh ``runs/<exp>/<timestamp>[-N]``; never an existing one, even
    when runs start in the same second (the directory is claimed by an atomic mkdir)."""
    base = Path(cfg.run_dir) / cfg.name / time.strftime("%Y%m%d-%H%M%S")
    run_dir, suffix = base, 1
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:
                run_dir, suffix = base.with_name(f"{base.name}-{suffix}"), suffix + 1
    except OSError as error:
        raise ConfigError(f"cannot create the run folder under run_dir={cfg.run_dir}: {one_line(error)}; "
                          "choose a writable folder with run_dir=...") from None


def _checkpoint_paths(trainer: L.Trainer) -> tuple[str, str]:
    """(best.ckpt by validation accuracy, last.ckpt) of a fitted run; "" for one not written."""
    callbacks = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    best = next((c.best_model_path for c in callbacks if c.monitor == BEST_MONITOR), "")
    last = next((c.last_model_path or c.best_model_path for c in callbacks if c.monitor is None), "")
    return best, last


def train(cfg: DictConfig) -> dict:
    """Fit, test the best checkpoint (the last weights when there is none: no validation split,
    or fast_dev_run) and return the results.

    The data is found (or downloaded) and read, and the memory of a training step checked
    (unless ``check_memory`` is false), before anything is written, so a missing or corrupt
    dataset or a batch too large for memory stops the run with its one-line error and no
    half-made run directory.
    """
    if RUN_DIR_ENV in os.environ:  # a process started by the DDP launcher: the launcher's run
        return _fit_and_test(cfg, Path(os.environ[RUN_DIR_ENV]), make_datamodule(cfg),
                             os.environ.get(ACTIVATION_MEMORY_ENV, "full"))
    check_trainer_settings(cfg)
    require_neurobench(cfg)
    if cfg.ckpt_path:
        check_resumable(cfg, read_checkpoint(cfg.ckpt_path))
    datamodule = ready_datamodule(cfg, stage=None)
    check_validation_interval(cfg, datamodule)
    check_neurobench_samples(cfg, datamodule)
    activation_memory, why = choose_activation_memory(cfg, datamodule)  # a step that cannot fit stops here, in one line
    run_dir = _new_run_directory(cfg)
    if why:
        rank_zero_info(why)  # which path auto chose, once the run is under way
    os.environ[RUN_DIR_ENV] = str(run_dir)  # inherited by the processes the DDP launcher starts
    os.environ[ACTIVATION_MEMORY_ENV] = activation_memory
    with signals_recorded() as received:
        try:
            return _fit_and_test(cfg, run_dir, datamodule, activation_memory)
        except MisconfigurationException as error:  # what Lightning finds wrong only once fitting starts
            _clear_failed_run(run_dir, error)
            raise ConfigError(f"lightning.Trainer refuses the run: {one_line(error)}") from None
        except BaseException as error:
            _clear_failed_run(run_dir, error)
            if received:
                raise interrupted(received[0], cfg, run_dir) from None
            if full := disk_full(error, run_dir):
                raise full from None
            raise
        finally:
            del os.environ[RUN_DIR_ENV], os.environ[ACTIVATION_MEMORY_ENV]


def _clear_failed_run(run_dir: Path, error: BaseException) -> None:
    """A run that stopped before its first checkpoint leaves nothing behind; one with checkpoints
    (to resume from) is kept and marked with a ``FAILED`` file naming why."""
    if any((run_dir / "checkpoints").glob("*.ckpt")):
        with contextlib.suppress(OSError), atomic_open(run_dir / "FAILED", "w") as marker:  # none rather than a partial one
            marker.write(f"{type(error).__name__}: {one_line(error)}\n")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the experiment's folder too, when this run was its only one
            run_dir.parent.rmdir()


def _fit_and_test(cfg: DictConfig, run_dir: Path, datamodule, activation_memory: str) -> dict:
    if cfg.speed.reuse_freed_memory:
        reuse_freed_memory()
    else:
        return_freed_memory()
    L.seed_everything(cfg.seed, workers=True)
    module = make_module(cfg, datamodule, activation_memory)
    trainer = make_trainer(cfg, run_dir)
    if trainer.is_global_zero:
        trainer.loggers[0].experiment  # noqa: B018 (the CSV logger claims the still empty directory first)
        OmegaConf.save(cfg, run_dir / "config.yaml")
    if cfg.test_every_epoch:
        datamodule = WithEpochTest(datamodule)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    best, last = _checkpoint_paths(trainer)
    tested = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)  # None: the last weights
    epoch_test = module.epoch_test_best or {}
    results = {
        "experiment": cfg.name,
        "arch": cfg.model.arch,
        "dataset": cfg.data.name,
        "bits": cfg.model.bits,
        "timesteps": cfg.model.timesteps,
        "test_acc": tested[0].get("test/acc") if tested else None,
        "test_acc_checkpoint": "best" if best else "last",
        "test_acc_best_epoch": epoch_test.get("acc"),  # selected on the test set, as the authors' release does
        "test_best_epoch": epoch_test.get("epoch"),
        "val_acc_best": float(module.val_acc_best.compute()) if module.val_acc_best.update_called else None,
        "model_megabytes": module.model_megabytes(),
        "activation_memory": activation_memory,
        "epochs": trainer.current_epoch,
        "checkpoint": best or last or None,
        "run_dir": str(run_dir),
        "val_firing_rates": _last_val_firing_rates(trainer),
    }
    if trainer.is_global_zero and cfg.neurobench:
        results["neurobench"] = neurobench_figures(cfg, module)  # the weights trainer.test scored
    if trainer.is_global_zero:
        with atomic_open(run_dir / "results.json", "w") as file:  # a sweep reads a partial one as unfinished, but none is left
            file.write(json.dumps(results, indent=2) + "\n")
    return results


def summary(results: dict) -> list[str]:
    """The lines ``qsnn train`` ends with: the kept weights' test accuracy, saying which weights,
    and the best per-epoch test accuracy (with ``test_every_epoch``), labelled as selected on the test set."""
    accuracy = results["test_acc"]
    if accuracy is None:
        return ["no test accuracy"]
    which = "best-validation checkpoint" if results["test_acc_checkpoint"] == "best" else "last epoch's weights"
    lines = [f"{results['experiment']}: test accuracy {accuracy:.4f} ({which})"]
    if results["test_acc_best_epoch"] is not None:
        lines.append(f"{results['experiment']}: best per-epoch test accuracy {results['test_acc_best_epoch']:.4f} "
                     f"(epoch {results['test_best_epoch']}, selected on the test set as the authors' release does)")
    return lines


def _last_val_firing_rates(trainer: L.Trainer) -> dict[str, float]:
    """f_l of every spiking layer, in forward order, from the last validation epoch."""
    monitor = next((c for c in trainer.callbacks if isinstance(c, SpikeMonitor)), None)
    return dict(monitor.last_rates.get("val", {})) if monitor else {}


def evaluate_checkpoint(path: str, overrides: list[str] = ()) -> dict:
    """Evaluate a checkpoint on its experiment's test split; ``key=value`` overrides (e.g.
    ``data.data_dir=...``) adjust the saved configuration."""
    refuse_model_overrides(overrides, "test")
    checkpoint = read_checkpoint(path)
    cfg = restore_config(checkpoint["hyper_parameters"]["experiment"], overrides)
    module = module_from_checkpoint(checkpoint)
    trainer = make_test_trainer(cfg)  # after the module: a checkpoint it cannot build is the only line printed
    datamodule = ready_datamodule(cfg, stage="test")
    tested = trainer.test(module, datamodule=datamodule, verbose=False)
    return {"checkpoint": path, "experiment": cfg.name, "bits": cfg.model.bits, "test_acc": tested[0].get("test/acc")}
