"""Rebuild a checkpoint's ``QSNNClassifier`` (for ``qsnn test`` and resuming) from a checkpoint
read by :func:`qsnn_lightning.checkpoint.read_checkpoint`, and check that a resume continues the
same run."""

from omegaconf import OmegaConf

from ..checkpoint import module_hyperparameters, unbuildable, unfitting
from ..errors import CheckpointError
from .module import QSNNClassifier


def module_from_checkpoint(checkpoint: dict) -> QSNNClassifier:
    """The QSNNClassifier saved in a checkpoint read by :func:`~qsnn_lightning.checkpoint.read_checkpoint`
    (of this version or of an earlier one, whose model options were flat hyperparameters)."""
    try:
        module = QSNNClassifier(**module_hyperparameters(checkpoint))
    except (TypeError, ValueError) as error:
        raise unbuildable(error) from None
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise unfitting(error) from None
    return module


RUN_IDENTITY = ("name", "data.name", "model.arch", "model.bits", "model.timesteps")


def check_resumable(cfg, checkpoint: dict) -> None:
    """Refuse to resume ``cfg`` from a checkpoint of another experiment, dataset, architecture,
    precision or T (unless ``check_resume=false``): it would continue someone else's run."""
    if not cfg.check_resume:
        return
    saved = checkpoint["hyper_parameters"]["experiment"]
    for key in RUN_IDENTITY:
        ours, theirs = OmegaConf.select(cfg, key), OmegaConf.select(OmegaConf.create(saved), key)
        if ours != theirs:
            raise CheckpointError(
                f"ckpt_path={cfg.ckpt_path} was trained with {key}={theirs}, this run has {key}={ours}; resume it with "
                f"the experiment it was trained with, or set check_resume=false to load it anyway"
            )
