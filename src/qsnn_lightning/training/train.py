"""Run an experiment: build DataModule, QSNNClassifier and Trainer from a validated config,
fit, test the kept weights and write ``results.json``; or test a saved checkpoint.

A run writes to ``<run_dir>/<experiment>/<timestamp>/``: ``config.yaml``, ``checkpoints/``
(``best.ckpt`` by ``val/acc`` when there is a validation split, ``last.ckpt``), ``metrics.csv``, and
``results.json``: ``test_acc``, the test accuracy of the best-validation checkpoint, or of the last
weights without a validation split (``data.val_fraction=0``), which ``test_acc_checkpoint`` names
(``"best"`` | ``"last"``); with ``test_every_epoch``, ``test_acc_best_epoch``, the highest per-epoch
test accuracy (how the authors' release selects its number: on the test set) and ``test_best_epoch``,
its epoch (0-based, as in ``metrics.csv``); the best validation accuracy; and the last validation
epoch's firing rate per layer.
"""

import contextlib
import json
import logging
import netrc
import os
import shutil
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from ..data import make_datamodule
from ..errors import ConfigError, one_line
from .callbacks import SpikeMonitor, default_monitors
from .checkpoint import check_resumable, module_from_checkpoint, read_checkpoint
from .config import restore_config
from .epoch_test import WithEpochTest
from .host_memory import return_freed_memory, reuse_freed_memory
from .module import QSNNClassifier
from .random_state import RandomStateCheckpoint

RUN_DIR_ENV = "QSNN_RUN_DIR"  # shared with the processes a DDP launcher starts
ACTIVATION_MEMORY_ENV = "QSNN_ACTIVATION_MEMORY"  # the path the launcher chose, for the processes it starts
BEST_MONITOR = "val/acc"  # what best.ckpt is chosen by


def make_module(cfg: DictConfig, datamodule, activation_memory: str = "full") -> QSNNClassifier:
    """The QSNNClassifier of ``cfg`` for ``datamodule``; ``activation_memory`` is the path chosen
    for ``speed.activation_memory`` (``"full"`` or ``"lean"``, training/memory_check.py)."""
    loss, optim = cfg.loss, cfg.optim
    return QSNNClassifier(
        OmegaConf.to_object(cfg.model), num_classes=datamodule.num_classes,
        input_shape=tuple(datamodule.input_shape), compile=cfg.speed.compile, channels_last=cfg.speed.channels_last,
        activation_memory=activation_memory,
        lam=loss.lam, spike_reduction=loss.reduction, optimizer=optim.name, lr=optim.lr, momentum=optim.momentum,
        weight_decay=optim.weight_decay, experiment=OmegaConf.to_container(cfg, resolve=True),
    )


def _ready_datamodule(cfg: DictConfig, stage: str | None):
    """A DataModule whose files are found (downloaded if allowed) and read for ``stage``."""
    datamodule = make_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup(stage)
    return datamodule


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


def synchronizes_batchnorm(accelerator: str) -> bool:
    """Whether multi-process runs on ``accelerator`` use SyncBatchNorm: yes on CUDA GPUs;
    PyTorch's SyncBatchNorm has no CPU implementation, so CPU processes keep local statistics."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def has_wandb_key() -> bool:
    """An API key in the environment or in ~/.netrc (where ``wandb login`` puts it), read without
    contacting the server."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_logger(cfg: DictConfig, run_dir: Path):
    """Weights & Biases: online with an API key (``WANDB_API_KEY`` or ``wandb login``), otherwise
    offline, so no network call can block the run; ``wandb sync <run dir>/wandb/offline-run-*``
    uploads it later. Metrics, the config and the figures are logged, and online the checkpoints
    as artifacts (Lightning cannot log artifacts offline: they stay in ``checkpoints/``)."""
    from lightning.pytorch.loggers import WandbLogger

    online = has_wandb_key() and os.environ.get("WANDB_MODE") != "offline"
    return WandbLogger(
        project=cfg.wandb_project, name=f"{cfg.name}-{run_dir.name}", save_dir=str(run_dir), offline=not online,
        log_model=online, config=OmegaConf.to_container(cfg, resolve=True),
    )


def check_trainer_settings(cfg: DictConfig) -> None:
    """Build a throwaway Trainer from ``trainer.*`` so that what Lightning refuses (an unknown
    accelerator, devices or strategy, negative limits) is one line before anything is written."""
    settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    quiet = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the throwaway Trainer's "GPU available: ..." lines
    try:
        with tempfile.TemporaryDirectory() as scratch:
            L.Trainer(logger=False, enable_checkpointing=False, default_root_dir=scratch, **settings)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as error:
        raise ConfigError(f"lightning.Trainer refuses the trainer settings: {one_line(error)}") from None
    finally:
        quiet.setLevel(level)


def make_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    trainer_settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_settings.setdefault("sync_batchnorm", synchronizes_batchnorm(trainer_settings.get("accelerator", "auto")))
    loggers = [CSVLogger(save_dir=run_dir, name="", version="")]
    if cfg.logger == "tensorboard":
        loggers.append(TensorBoardLogger(save_dir=run_dir, name="tensorboard", version=""))
    elif cfg.logger == "wandb":
        loggers.append(wandb_logger(cfg, run_dir))
    # Lightning's save_last only refreshes last.ckpt when the best improves; resuming after a
    # crash needs the latest epoch, so a second checkpoint without a monitor keeps it.
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", enable_version_counter=False)
    checkpoints = [last]
    if cfg.data.val_fraction > 0:  # without a validation split there is no best checkpoint to choose
        checkpoints.insert(0, ModelCheckpoint(
            dirpath=run_dir / "checkpoints", filename="best", monitor=BEST_MONITOR, mode="max", auto_insert_metric_name=False,
            enable_version_counter=False,
        ))
    return L.Trainer(
        default_root_dir=run_dir, logger=loggers, callbacks=[*checkpoints, RandomStateCheckpoint(), *default_monitors()],
        **trainer_settings,
    )


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
    if cfg.ckpt_path:
        check_resumable(cfg, read_checkpoint(cfg.ckpt_path))
    datamodule = _ready_datamodule(cfg, stage=None)
    from .memory_check import choose_activation_memory

    activation_memory, why = choose_activation_memory(cfg, datamodule)  # a step that cannot fit stops here, in one line
    run_dir = _new_run_directory(cfg)
    if why:
        rank_zero_info(why)  # which path auto chose, once the run is under way
    os.environ[RUN_DIR_ENV] = str(run_dir)  # inherited by the processes the DDP launcher starts
    os.environ[ACTIVATION_MEMORY_ENV] = activation_memory
    try:
        return _fit_and_test(cfg, run_dir, datamodule, activation_memory)
    except MisconfigurationException as error:  # what Lightning finds wrong only once fitting starts
        _clear_failed_run(run_dir, error)
        raise ConfigError(f"lightning.Trainer refuses the run: {one_line(error)}") from None
    except BaseException as error:
        _clear_failed_run(run_dir, error)
        raise
    finally:
        del os.environ[RUN_DIR_ENV], os.environ[ACTIVATION_MEMORY_ENV]


def _clear_failed_run(run_dir: Path, error: BaseException) -> None:
    """A run that stopped before its first checkpoint leaves nothing behind; one with checkpoints
    (to resume from) is kept and marked with a ``FAILED`` file naming why."""
    if any((run_dir / "checkpoints").glob("*.ckpt")):
        (run_dir / "FAILED").write_text(f"{type(error).__name__}: {one_line(error)}\n")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the experiment's folder too, when this run was its only one
            run_dir.parent.rmdir()


def _fit_and_test(cfg: DictConfig, run_dir: Path, datamodule, activation_memory: str) -> dict:
    if activation_memory == "lean":
        return_freed_memory()  # the lean path's point is a small resident set (host_memory.py)
    elif cfg.speed.reuse_freed_memory:
        reuse_freed_memory()
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
    if trainer.is_global_zero:
        (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
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
    checkpoint = read_checkpoint(path)
    cfg = restore_config(checkpoint["hyper_parameters"]["experiment"], overrides)
    datamodule = _ready_datamodule(cfg, stage="test")
    module = module_from_checkpoint(checkpoint)
    settings = {key: cfg.trainer[key] for key in ("accelerator", "precision", "limit_test_batches") if key in cfg.trainer}
    trainer = L.Trainer(logger=False, enable_checkpointing=False, devices=1, **settings)
    tested = trainer.test(module, datamodule=datamodule, verbose=False)
    return {"checkpoint": path, "experiment": cfg.name, "bits": cfg.model.bits, "test_acc": tested[0].get("test/acc")}
