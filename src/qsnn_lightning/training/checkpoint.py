"""Read a qsnn-lightning checkpoint safely and rebuild its ``QSNNClassifier`` (for ``qsnn test``,
resuming and the exporter, which must not need the training driver)."""

from dataclasses import fields
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ..errors import CheckpointError, first_line
from ..snn.spec import ModelSpec
from .module import QSNNClassifier

REQUIRED_MODEL_KEYS = ("arch", "bits", "timesteps")  # no default can stand in for these


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint without running code from it (``weights_only=True``)."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a .ckpt file from a run directory")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} cannot be read safely ({first_line(error)[:160]}); is it a qsnn-lightning .ckpt?"
        ) from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    experiment = hparams.get("experiment") if isinstance(hparams, dict) else None
    if not isinstance(experiment, dict) or not experiment or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a qsnn-lightning checkpoint (no experiment configuration or weights in it)")
    spec = module_hyperparameters(checkpoint)["spec"]
    missing = [key for key in REQUIRED_MODEL_KEYS if key not in (spec if isinstance(spec, dict) else {})]
    if missing:
        raise CheckpointError(f"{path} does not say its model's {', '.join(missing)}; it was not written by qsnn train")
    return checkpoint


def module_hyperparameters(checkpoint: dict) -> dict:
    """The arguments of ``QSNNClassifier`` saved in a checkpoint, in this version's layout: the
    model as one ``spec`` dict. Checkpoints of earlier versions hold the model options as flat
    keys (``arch``, ``bits``, ``tau``, ...); those move into ``spec``."""
    hparams = dict(checkpoint["hyper_parameters"])
    if "spec" in hparams:
        return hparams
    model_options = {field.name for field in fields(ModelSpec)}
    spec = {key: hparams.pop(key) for key in list(hparams) if key in model_options}
    return {"spec": spec, **hparams}


def module_from_checkpoint(checkpoint: dict) -> QSNNClassifier:
    """The QSNNClassifier saved in a checkpoint read by :func:`read_checkpoint` (of this version or
    of an earlier one, whose model options were flat hyperparameters)."""
    try:
        module = QSNNClassifier(**module_hyperparameters(checkpoint))
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"the checkpoint's model settings cannot be built by this version ({first_line(error)[:160]}); retrain it with this version"
        ) from None
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[1:2] or [""]
        raise CheckpointError(
            f"the checkpoint's weights do not fit its architecture in this version ({first[0].strip()[:120]}); "
            "retrain it with this version"
        ) from None
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
