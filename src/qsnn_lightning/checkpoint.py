"""Read a qsnn-lightning checkpoint safely and rebuild its spiking backbone with torch alone (for
the exporter, which loads neither Lightning nor torchmetrics); ``training/checkpoint.py`` rebuilds
the whole ``QSNNClassifier`` from the same reader."""

from dataclasses import fields
from pathlib import Path

import torch

from .errors import CheckpointError, first_line
from .snn.backbones import SpikingBackbone, build_model
from .snn.spec import ModelSpec

REQUIRED_MODEL_KEYS = ("arch", "bits", "timesteps")  # no default can stand in for these
# QSNNClassifier's arguments besides ``spec``: those its backbone is built with (build_model's), and the
# others (loss, optimizer, experiment); tests/test_checkpoint.py checks them against its signature
BACKBONE_ARGUMENTS = ("num_classes", "input_shape", "compile", "channels_last", "activation_memory")
TRAINING_ARGUMENTS = ("lam", "spike_reduction", "optimizer", "lr", "momentum", "weight_decay", "experiment")
BACKBONE_PREFIX = "model."  # the backbone's entries in the state_dict: QSNNClassifier.model


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint without running code from it (``weights_only=True``)."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} {_why_not_a_file(Path(path))}; pass the path of a .ckpt file from a run "
                              "directory (runs/<experiment>/<time>/checkpoints/last.ckpt)")
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
    if broken := non_finite(checkpoint["state_dict"]):
        raise CheckpointError(f"checkpoint {path} is not usable: {broken}; the run diverged before it was saved "
                              "(use an earlier checkpoint, or retrain with a lower optim.lr)")
    return checkpoint


def _why_not_a_file(path: Path) -> str:
    """What ``path`` is instead of a regular file."""
    if path.is_dir():
        return "is a directory"
    if path.is_symlink():
        return "is a symbolic link that leads to no file"
    return "is not a regular file" if path.exists() else "does not exist"


def non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The first floating tensor holding NaN or infinity, described (``'stem.0.weight' holds 3 NaN
    of 432 values``); None when all are finite. One device sync when all are (the common case)."""
    floating = {name: tensor for name, tensor in tensors.items() if torch.is_tensor(tensor) and tensor.is_floating_point()}
    if not floating or torch.stack([torch.isfinite(tensor).all() for tensor in floating.values()]).all():
        return None
    name, tensor = next((name, tensor) for name, tensor in floating.items() if not torch.isfinite(tensor).all())
    nans, infinite = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
    kinds = " and ".join(text for count, text in ((nans, f"{nans} NaN"), (infinite, f"{infinite} infinite")) if count)
    return f"'{name}' holds {kinds} of {tensor.numel():,} values"


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


def unbuildable(error: Exception) -> CheckpointError:
    """The one-line error for a checkpoint whose model settings this version cannot build (``error`` says why)."""
    return CheckpointError(
        f"the checkpoint's model settings cannot be built by this version ({first_line(error)[:160]}); retrain it with this version"
    )


def unfitting(error: RuntimeError) -> CheckpointError:
    """The one-line error for weights that do not fit the architecture built (``error``: ``load_state_dict``'s)."""
    first = str(error).strip().splitlines()[1:2] or [""]
    return CheckpointError(
        f"the checkpoint's weights do not fit its architecture in this version ({first[0].strip()[:120]}); "
        "retrain it with this version"
    )


def backbone_from_checkpoint(checkpoint: dict) -> tuple[SpikingBackbone, ModelSpec]:
    """The spiking backbone saved in a checkpoint read by :func:`read_checkpoint`, with its weights,
    and its :class:`ModelSpec`: the ``model`` of the checkpoint's ``QSNNClassifier``, built as that
    builds it (``build_model`` with the saved spec and backbone arguments), without Lightning.
    Settings this version does not know, or weights that do not fit, are one-line CheckpointErrors."""
    hparams = module_hyperparameters(checkpoint)
    try:
        unknown = sorted(set(hparams) - {"spec", *BACKBONE_ARGUMENTS, *TRAINING_ARGUMENTS})
        if unknown:
            raise TypeError(f"got an unexpected keyword argument {unknown[0]!r}")  # as QSNNClassifier(**hparams) says
        spec = ModelSpec.coerce(hparams["spec"])
        model = build_model(spec, **{name: hparams[name] for name in BACKBONE_ARGUMENTS if name in hparams})
    except (TypeError, ValueError) as error:
        raise unbuildable(error) from None
    state = checkpoint["state_dict"]
    try:
        model.load_state_dict({key.removeprefix(BACKBONE_PREFIX): state[key] for key in state
                               if key.startswith(BACKBONE_PREFIX)})
    except RuntimeError as error:
        raise unfitting(error) from None
    return model, spec
