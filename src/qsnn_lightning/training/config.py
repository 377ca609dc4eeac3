"""Experiment configuration: OmegaConf, merged base -> experiment -> command-line dotlist, and
validated against a schema (the dataclasses below) plus the allowed values of each choice.

Every problem is reported as a :class:`ConfigError` with a one-line message naming the key and
what is allowed.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from ..errors import ConfigError
from ..snn.losses import REDUCTIONS
from ..snn.backbones import BACKBONES
from ..snn.neurons import NEURON_IMPLS
from ..snn.precision import Precision
from ..snn.quant import BinaryWeight
from ..snn.spec import ModelSpec
from .trainer_arguments import check_trainer_arguments

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"  # package data
DEFAULT_EXPERIMENT = "fmnist_1w2u"


# The model section's schema is the spec the model is built from (snn/spec.py): one dataclass for
# the config keys model.*, the LightningModule, the checkpoint and the builders. OmegaConf marks
# the section read-only (the spec is frozen); merging base -> experiment -> overrides still works.
ModelConfig = ModelSpec


@dataclass
class LossConfig:
    lam: float = 1e-3  # lambda of Eq. 16; 0 switches the spike term off
    reduction: str = "sum"  # Eq. 15 sums over hidden layers; "mean" as in the authors' release


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd (momentum) | adam; cosine decay over trainer.max_epochs
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4  # applied to conv / linear weights only


@dataclass
class EventConfig:
    """Frames of event datasets (dvsgesture, dvscifar10, nfashionmnist); T is model.timesteps."""

    split_by: str = "number"  # number: equal event counts per frame | time: equal time bins
    resize: Optional[int] = None  # side of the square frames; None: the dataset's (48 for dvscifar10)
    resize_mode: str = "bilinear"  # bilinear: interpolated counts | area: every event summed into its block
    roll: int = 5  # NDA (training only): one of roll (pixels), rotation, shear (degrees) per sample
    rotate: float = 30.0
    shear: float = 30.0
    flip: bool = True


@dataclass
class DataConfig:
    name: str = "fashionmnist"
    data_dir: Optional[str] = None
    batch_size: int = 128
    num_workers: int = 0
    val_fraction: float = 0.1
    download: bool = True
    augment: bool = True
    subset: Optional[int] = None  # use only the first N samples of each split (smoke runs)
    events: EventConfig = field(default_factory=EventConfig)


# Any argument of lightning.Trainer that takes a value (trainer_arguments.py checks names and
# values); these are the defaults every experiment starts from.
TRAINER_DEFAULTS = {
    "max_epochs": 10,
    "accelerator": "auto",
    "devices": 1,
    "precision": "32-true",
    "log_every_n_steps": 50,
}


@dataclass
class SpeedConfig:
    """Speed options of the model and of the process (not Lightning Trainer arguments)."""

    compile: bool = False  # compile the neuron step functions with torch.compile (one-time cost)
    channels_last: bool = False  # NHWC convolutions (usually faster on GPUs with bf16/fp16)
    reuse_freed_memory: bool = True  # glibc keeps freed blocks for the next step (host_memory.py)


@dataclass
class ExperimentConfig:
    name: str = DEFAULT_EXPERIMENT
    seed: int = 42
    run_dir: str = "runs"
    logger: str = "csv"  # csv | tensorboard | wandb (CSV metrics are always written)
    wandb_project: str = "qsnn-lightning"
    ckpt_path: Optional[str] = None  # resume training from this checkpoint
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: Dict[str, Any] = field(default_factory=lambda: dict(TRAINER_DEFAULTS))
    speed: SpeedConfig = field(default_factory=SpeedConfig)


def _choices() -> dict[str, tuple[str, ...]]:
    from ..data import DATAMODULES  # late: the data package imports torchvision
    from ..data.frames import RESIZE_MODES, SPLITS

    return {
        "model.arch": tuple(sorted(BACKBONES)),
        "model.standardize": BinaryWeight.STANDARDIZATIONS,
        "model.neuron": NEURON_IMPLS,
        "loss.reduction": REDUCTIONS,
        "optim.name": ("sgd", "adam"),
        "data.name": tuple(sorted(DATAMODULES)),
        "data.events.split_by": SPLITS,
        "data.events.resize_mode": RESIZE_MODES,
        "logger": ("csv", "tensorboard", "wandb"),
    }


POSITIVE = ("model.timesteps", "data.batch_size", "optim.lr")
NON_NEGATIVE = (
    "loss.lam", "optim.weight_decay", "optim.momentum", "data.num_workers", "model.beta",
    "data.events.roll", "data.events.rotate", "data.events.shear",
)


def experiment_names(directory: Path = EXPERIMENTS_DIR) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.yaml") if path.stem != "base")


def _describe(error: OmegaConfBaseException, schema: DictConfig) -> str:
    key = getattr(error, "full_key", None) or getattr(error, "key", "")
    if isinstance(error, ConfigKeyError) or "not in" in str(error):
        parent, _, leaf = str(key).rpartition(".")
        node = OmegaConf.select(schema, parent) if parent else schema
        valid = ", ".join(node.keys()) if isinstance(node, DictConfig) else "(none)"
        where = f" in '{parent}'" if parent else ""
        return f"unknown config key '{key}'; valid keys{where}: {valid}"
    if isinstance(error, ValidationError):
        message = str(error).splitlines()[0]
        return f"bad value for '{key}': {message}"
    return str(error).splitlines()[0]


def _merge(schema: DictConfig, *configs) -> DictConfig:
    try:
        return OmegaConf.merge(schema, *configs)
    except OmegaConfBaseException as error:
        raise ConfigError(_describe(error, schema)) from None


def validate(cfg: DictConfig) -> None:
    """Check values the schema's types cannot: choices, bit widths, ranges."""
    for key, allowed in _choices().items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"bad value for '{key}': {value!r}; allowed: {', '.join(allowed)}")
    try:
        Precision.parse(cfg.model.bits)
    except ValueError as error:
        raise ConfigError(f"bad value for 'model.bits': {error}") from None
    for key in POSITIVE:
        if OmegaConf.select(cfg, key) <= 0:
            raise ConfigError(f"bad value for '{key}': {OmegaConf.select(cfg, key)}; it must be > 0")
    for key in NON_NEGATIVE:
        if OmegaConf.select(cfg, key) < 0:
            raise ConfigError(f"bad value for '{key}': {OmegaConf.select(cfg, key)}; it must be >= 0")
    if cfg.data.events.resize is not None and cfg.data.events.resize < 1:
        raise ConfigError(f"bad value for 'data.events.resize': {cfg.data.events.resize}; it must be >= 1 or null")
    if not 0 <= cfg.data.val_fraction < 1:
        raise ConfigError(f"bad value for 'data.val_fraction': {cfg.data.val_fraction}; it must be in [0, 1)")
    check_trainer_arguments(OmegaConf.to_container(cfg.trainer, resolve=True))


def _parse_overrides(overrides) -> DictConfig:
    malformed = [item for item in overrides if "=" not in item]
    if malformed:
        raise ConfigError(f"override {malformed[0]!r} is not of the form key=value")
    return OmegaConf.from_dotlist(list(overrides))


def _moved_speed_options(saved: dict) -> dict:
    """A saved configuration of an earlier version, whose speed options were ``trainer.*`` keys."""
    trainer = dict(saved.get("trainer") or {})
    moved = {key: trainer.pop(key) for key in SpeedConfig.__dataclass_fields__ if key in trainer}
    if not moved:
        return saved
    return {**saved, "trainer": trainer, "speed": {**moved, **(saved.get("speed") or {})}}


def restore_config(saved: dict, overrides: list[str] = ()) -> DictConfig:
    """A configuration saved in a checkpoint, with ``key=value`` overrides, validated again."""
    cfg = _merge(OmegaConf.structured(ExperimentConfig), _moved_speed_options(saved), _parse_overrides(overrides))
    validate(cfg)
    return cfg


def load_config(
    experiment: str = DEFAULT_EXPERIMENT, overrides: list[str] = (), directory: Path = EXPERIMENTS_DIR
) -> DictConfig:
    """base.yaml -> <experiment>.yaml -> ``key=value`` overrides, validated; ``name`` is the experiment."""
    path = directory / f"{experiment}.yaml"
    if experiment == "base" or not path.is_file():
        raise ConfigError(
            f"unknown experiment {experiment!r}; choose one of {', '.join(experiment_names(directory))} "
            f"(files in {directory})"
        )
    command_line = _parse_overrides(overrides)
    try:
        files = [OmegaConf.load(directory / "base.yaml"), OmegaConf.load(path)]
    except Exception as error:  # YAML syntax errors and the like
        raise ConfigError(f"cannot read the experiment configuration: {str(error).splitlines()[0]}") from None
    cfg = _merge(OmegaConf.structured(ExperimentConfig), *files, {"name": experiment}, command_line)
    validate(cfg)
    return cfg
