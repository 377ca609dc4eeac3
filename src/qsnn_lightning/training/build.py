"""A validated config made into what a run needs: the DataModule, the QSNNClassifier and the
Lightning Trainer with the run's loggers, checkpoints and monitors. The run driver (``train``),
the sweeps and the memory preflight all build through here."""

import logging
import netrc
import os
import tempfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from ..data.modules import make_datamodule
from ..errors import ConfigError, one_line
from .atomic_checkpoints import AtomicCheckpointIO
from .callbacks import default_monitors
from .divergence import FiniteWeights
from .interrupts import StopOnSignal
from .module import QSNNClassifier
from .random_state import RandomStateCheckpoint

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


def ready_datamodule(cfg: DictConfig, stage: str | None):
    """A DataModule whose files are found (downloaded if allowed) and read for ``stage``."""
    datamodule = make_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup(stage)
    return datamodule


def check_validation_interval(cfg: DictConfig, datamodule) -> None:
    """An integer ``trainer.val_check_interval`` within an epoch's training batches, which Lightning
    checks only once fitting starts (a traceback after the run folder is made)."""
    interval, limit = cfg.trainer.get("val_check_interval"), cfg.trainer.get("limit_train_batches", 1.0)
    if not isinstance(interval, int) or isinstance(interval, bool) or cfg.trainer.get("check_val_every_n_epoch", 1) is None:
        return
    batches = len(datamodule.train_dataloader())
    batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
    if interval > batches:
        raise ConfigError(f"trainer.val_check_interval={interval} is more than the {batches} training batches of an epoch; "
                          f"give at most {batches}, a fraction of an epoch (e.g. 0.5), or also set "
                          "trainer.check_val_every_n_epoch=null to count batches across epochs")


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
            _trainer(logger=False, enable_checkpointing=False, default_root_dir=scratch, **settings)
    finally:
        quiet.setLevel(level)


def _trainer(**settings) -> L.Trainer:
    """``lightning.Trainer(**settings)``, or the one-line ConfigError of what it refuses."""
    try:
        return L.Trainer(**settings)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError, ImportError) as error:  # ImportError: tpu without torch_xla
        raise ConfigError(f"lightning.Trainer refuses the trainer settings: {one_line(error)}") from None


def make_test_trainer(cfg: DictConfig) -> L.Trainer:
    """The Trainer of ``qsnn test``: one device, no logger or checkpoints, the run's accelerator,
    precision, test-batch limit and progress bar; what Lightning refuses is one line."""
    kept = ("accelerator", "precision", "limit_test_batches", "enable_progress_bar")
    settings = {key: cfg.trainer[key] for key in kept if key in cfg.trainer}
    if settings.get("limit_test_batches", 1) == 0:
        raise ConfigError("trainer.limit_test_batches=0 tests no batch; give a positive number of batches (or a fraction), "
                          "or drop it to test the whole split")
    return _trainer(logger=False, enable_checkpointing=False, devices=1, **settings)


def make_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    """The run's Trainer: ``trainer.*`` as given (SyncBatchNorm on multi-GPU runs unless set), CSV
    and the chosen logger in ``run_dir``, ``best.ckpt`` by validation accuracy where there is a
    validation split, ``last.ckpt`` every epoch, the random-state checkpoint and the monitors."""
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
        default_root_dir=run_dir, logger=loggers, plugins=[AtomicCheckpointIO()],
        callbacks=[*checkpoints, RandomStateCheckpoint(), FiniteWeights(), StopOnSignal(), *default_monitors()],
        **trainer_settings,
    )
