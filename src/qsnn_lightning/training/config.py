"""Experiment configuration: OmegaConf, merged base -> experiment -> command-line dotlist, and
validated against a schema (the dataclasses below) plus the allowed values of each choice.

Every problem is reported as a :class:`ConfigError` with a one-line message naming the key and
what is allowed.
"""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, InterpolationResolutionError, OmegaConfBaseException, ValidationError

from ..errors import ConfigError, first_line, one_line
from ..snn.backbones import BACKBONES
from ..snn.losses import REDUCTIONS
from ..snn.neurons import NEURON_IMPLS
from ..snn.precision import Precision
from ..snn.quant import MEMBRANE_SCALES, BinaryWeight
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
    """``loss``: the WS-DR objective (Eq. 15-16)."""

    lam: float = 1e-3  # lambda of Eq. 16; 0 switches the spike term off
    reduction: str = "sum"  # Eq. 15 sums over hidden layers; "mean" as in the authors' release


@dataclass
class OptimConfig:
    """``optim``: the optimizer and its cosine schedule."""

    name: str = "sgd"  # sgd (momentum) | adam; cosine decay over trainer.max_epochs
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4  # applied to conv / linear weights only


@dataclass
class EventConfig:
    """Frames of event datasets (dvsgesture, dvscifar10, nfashionmnist); T is model.timesteps."""

    split_by: str = "number"  # number: equal event counts per frame | time: equal time bins
    resize: int | None = None  # side of the square frames; None: the dataset's (48 for dvscifar10)
    resize_mode: str = "bilinear"  # bilinear: interpolated counts | area: every event summed into its block
    roll: int = 5  # NDA (training only): one of roll (pixels), rotation, shear (degrees) per sample
    rotate: float = 30.0
    shear: float = 30.0
    flip: bool = True


@dataclass
class DataConfig:
    """``data``: the dataset, where it lives and how it is loaded and split."""

    name: str = "fashionmnist"
    data_dir: str | None = None
    batch_size: int = 128
    num_workers: int = 0
    val_fraction: float = 0.1
    download: bool = True
    augment: bool = True
    subset: int | None = None  # use only the first N samples of each split (smoke runs)
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
    reuse_freed_memory: bool = True  # keep freed blocks for the next step (faster); false: return them (smaller peak)
    activation_memory: str = "auto"  # full | lean (recompute in backward, same gradients) | auto: lean where full does not fit


@dataclass
class ExperimentConfig:
    """An experiment: the schema every YAML file and ``key=value`` override is checked against."""

    name: str = DEFAULT_EXPERIMENT
    seed: int = 42
    run_dir: str = "runs"
    logger: str = "csv"  # csv | tensorboard | wandb (CSV metrics are always written)
    wandb_project: str = "qsnn-lightning"
    ckpt_path: str | None = None  # resume training from this checkpoint
    check_resume: bool = True  # refuse a ckpt_path of another experiment, dataset, arch, bits or T
    check_memory: bool = True  # refuse a run whose training step would not fit in free memory (memory_check.py)
    test_every_epoch: bool = False  # also evaluate the test split at every validation check (training/epoch_test.py)
    neurobench: bool = False  # after the final test, NeuroBench's figures of the tested weights in results.json (training/bench_record.py)
    neurobench_samples: int | None = None  # the first N test samples for those figures; None: the whole test split
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: dict[str, Any] = field(default_factory=lambda: dict(TRAINER_DEFAULTS))
    speed: SpeedConfig = field(default_factory=SpeedConfig)


SECTIONS = {"model": "bits", "loss": "lam", "optim": "lr", "data": "batch_size", "trainer": "max_epochs",
            "speed": "compile"}  # the config's sections, each with a key to name in a message


def _choices() -> dict[str, tuple[str, ...]]:
    from ..data import DATA  # on demand: the data package loads torchvision and tonic, which reading a config does not need
    from ..data.frames import RESIZE_MODES, SPLITS

    return {
        "model.arch": tuple(sorted(BACKBONES)),
        "model.standardize": BinaryWeight.STANDARDIZATIONS,
        "model.neuron": NEURON_IMPLS,
        "model.membrane_scale": MEMBRANE_SCALES,
        "loss.reduction": REDUCTIONS,
        "optim.name": ("sgd", "adam"),
        "data.name": tuple(sorted(DATA)),
        "data.events.split_by": SPLITS,
        "data.events.resize_mode": RESIZE_MODES,
        "logger": ("csv", "tensorboard", "wandb"),
        "speed.activation_memory": ("full", "lean", "auto"),
    }


POSITIVE = ("model.timesteps", "model.theta", "model.ste_window", "data.batch_size", "optim.lr")
NON_NEGATIVE = (
    "loss.lam", "optim.weight_decay", "optim.momentum", "data.num_workers", "model.beta",
    "data.events.roll", "data.events.rotate", "data.events.shear",
)


INPUT_BITS = (None, 8, 32)  # model.input_bits: unset (by the weights' precision), int8 pixels, off
MAX_TIMESTEPS = 1024  # beyond any event dataset's frames per sample; larger T is a typo, not a run
SEED_RANGE = (0, 2**32 - 1)  # what numpy's and Lightning's seeding accept


def _check_ranges(cfg: DictConfig) -> None:
    """Ranges the types cannot state: finite numbers, the LIF's 0 < tau <= 1 and theta > 0 (Eq. 1-2),
    positive sizes and rates, a seed numpy accepts."""
    for key, value in _leaves(OmegaConf.to_container(cfg, resolve=True)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"bad value for '{key}': {value}; it must be a finite number")
    for key in POSITIVE:
        if OmegaConf.select(cfg, key) <= 0:
            raise ConfigError(f"bad value for '{key}': {OmegaConf.select(cfg, key)}; it must be > 0")
    for key in NON_NEGATIVE:
        if OmegaConf.select(cfg, key) < 0:
            raise ConfigError(f"bad value for '{key}': {OmegaConf.select(cfg, key)}; it must be >= 0")
    bounds = {
        "model.tau": (0.0, 1.0, "0 < tau <= 1 (the leak of Eq. 1)"),
        "model.timesteps": (0, MAX_TIMESTEPS, f"1 <= timesteps <= {MAX_TIMESTEPS}"),
        "seed": (SEED_RANGE[0] - 1, SEED_RANGE[1], f"{SEED_RANGE[0]} <= seed <= {SEED_RANGE[1]}"),
    }
    for key, (low, high, rule) in bounds.items():
        value = OmegaConf.select(cfg, key)
        if not low < value <= high:
            raise ConfigError(f"bad value for '{key}': {value}; it must satisfy {rule}")
    if cfg.data.subset is not None and cfg.data.subset < 1:
        raise ConfigError(f"bad value for 'data.subset': {cfg.data.subset}; it must be >= 1 or null (all samples)")
    if cfg.neurobench_samples is not None and cfg.neurobench_samples < 1:
        raise ConfigError(f"bad value for 'neurobench_samples': {cfg.neurobench_samples}; it must be >= 1 or null (the whole "
                          "test split)")
    if cfg.data.events.resize is not None and cfg.data.events.resize < 1:
        raise ConfigError(f"bad value for 'data.events.resize': {cfg.data.events.resize}; it must be >= 1 or null")
    if not 0 <= cfg.data.val_fraction < 1:
        raise ConfigError(f"bad value for 'data.val_fraction': {cfg.data.val_fraction}; it must be in [0, 1)")


def _leaves(node, prefix: str = ""):
    """(dotted key, value) of every scalar in a nested mapping."""
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def experiment_names(directory: Path = EXPERIMENTS_DIR) -> list[str]:
    """The packaged experiments' names (``base`` is not one)."""
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
        return f"bad value for '{key}': {first_line(error)}"
    return first_line(error)


def _merge(schema: DictConfig, *configs) -> DictConfig:
    """The configs merged over the schema, interpolations (``${...}``) resolved in place."""
    try:
        cfg = OmegaConf.merge(schema, *configs)
    except OmegaConfBaseException as error:
        raise ConfigError(_describe(error, schema)) from None
    try:
        OmegaConf.resolve(cfg)
    except InterpolationResolutionError as error:
        raise ConfigError(f"cannot resolve the interpolation in '{error.full_key}' ({first_line(error)}); give a plain "
                          "value, or ${key} of a key that has one") from None
    return cfg


def validate(cfg: DictConfig, trainer: bool = True) -> None:
    """Check values the schema's types cannot: choices, bit widths, ranges, and with ``trainer``
    the ``trainer`` section against lightning.Trainer's arguments (which loads Lightning)."""
    for key, allowed in _choices().items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"bad value for '{key}': {value!r}; allowed: {', '.join(allowed)}")
    try:
        Precision.parse(cfg.model.bits)
    except ValueError as error:
        raise ConfigError(f"bad value for 'model.bits': {error}") from None
    if cfg.model.input_bits not in INPUT_BITS:
        raise ConfigError(f"bad value for 'model.input_bits': {cfg.model.input_bits}; allowed: 8 (int8 input pixels, "
                          "what the export reads), 32 (off) or null (8 for quantized weights, 32 for 32w)")
    _check_ranges(cfg)
    if trainer:
        check_trainer_arguments(OmegaConf.to_container(cfg.trainer, resolve=True))


def _parse_overrides(overrides) -> DictConfig:
    malformed = [item for item in overrides if "=" not in item]
    if malformed:
        raise ConfigError(f"override {malformed[0]!r} is not of the form key=value")
    keys = [item.split("=", 1)[0] for item in overrides]
    sections = [key for key in keys if key in SECTIONS]
    if sections:
        raise ConfigError(f"override {sections[0]}=... replaces a whole section of the config; set its keys instead, "
                          f"e.g. {sections[0]}.{SECTIONS[sections[0]]}=...")
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ConfigError(f"override {repeated[0]!r} is given more than once; keep one {repeated[0]}=... on the command line")
    return OmegaConf.from_dotlist(list(overrides))


def _moved_speed_options(saved: dict) -> dict:
    """A saved configuration of an earlier version, whose speed options were ``trainer.*`` keys."""
    trainer = dict(saved.get("trainer") or {})
    moved = {key: trainer.pop(key) for key in SpeedConfig.__dataclass_fields__ if key in trainer}
    if not moved:
        return saved
    return {**saved, "trainer": trainer, "speed": {**moved, **(saved.get("speed") or {})}}


def refuse_overrides(overrides: list[str], section: str, why: str) -> None:
    """Refuse, in one line ending with ``why``, the first override of a key in ``section``: one a
    command would ignore (``model.*`` for ``qsnn test`` and ``qsnn export``, which use the model
    saved in the checkpoint; ``trainer.*`` for ``qsnn export``, which runs no Trainer)."""
    refused = [item for item in overrides if item.startswith(f"{section}.")]
    if refused:
        raise ConfigError(f"{refused[0]}: {why}")


def refuse_model_overrides(overrides: list[str], command: str) -> None:
    """``model.*`` overrides, which ``qsnn test`` and ``qsnn export`` would ignore (or misreport)."""
    refuse_overrides(overrides, "model", f"qsnn {command} uses the model saved in the checkpoint, which model.* overrides "
                                         "do not change; drop it (train a model with that setting to evaluate one)")


def restore_config(saved: dict, overrides: list[str] = (), trainer: bool = True) -> DictConfig:
    """A configuration saved in a checkpoint, with ``key=value`` overrides, validated again;
    ``trainer=False`` leaves the ``trainer`` section unchecked, for a caller that runs no Trainer
    and must not load Lightning (the exporter)."""
    cfg = _merge(OmegaConf.structured(ExperimentConfig), _moved_speed_options(saved), _parse_overrides(overrides))
    validate(cfg, trainer)
    return cfg


NAME_MAX = 255  # bytes in a file name on Linux and macOS file systems (the name is ASCII)
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a run folder's name: no separators, no '..'


def is_experiment_file(experiment: str) -> bool:
    """Whether the experiment argument names a YAML file (``my_exp.yaml``) rather than a packaged experiment."""
    return experiment.endswith((".yaml", ".yml"))


def _experiment_file(experiment: str, directory: Path) -> tuple[Path, str]:
    """The YAML file of ``experiment`` and the run's name: a packaged name, or a path to a file."""
    if is_experiment_file(experiment):
        path = Path(experiment).expanduser()
        if not path.is_file():
            raise ConfigError(f"experiment file {experiment} does not exist; pass the path of a YAML file or a packaged name")
        return path, path.stem
    if experiment == "base" or not EXPERIMENT_NAME.fullmatch(experiment) or not (directory / f"{experiment}.yaml").is_file():
        raise ConfigError(
            f"unknown experiment {experiment!r}; choose one of {', '.join(experiment_names(directory))} "
            "(see 'qsnn experiments') or pass the path of your own .yaml file"
        )
    return directory / f"{experiment}.yaml", experiment


def _read_yaml(path: Path) -> DictConfig:
    try:
        content = OmegaConf.load(path)
    except Exception as error:  # YAML syntax errors, unreadable files and the like
        raise ConfigError(f"cannot read the experiment configuration {path}: {_why_unreadable(error)}") from None
    if not isinstance(content, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of config keys (like base.yaml), not a list")
    return content


def _why_unreadable(error: Exception) -> str:
    """The reason a YAML file did not load, in one line. omegaconf 2.4.0 says its node limit is about
    aliases, but a large plain file (a long list) reaches it too: that case is named as a size."""
    limit = re.match(r"YAML node expansion exceeds the configured limit of (\d+)", str(getattr(error, "problem", "")))
    if limit:
        return (f"it holds more than {int(limit[1]):,} YAML nodes, counting what its aliases repeat (an experiment holds under "
                "a hundred): keep data out of it, or raise OMEGACONF_MAX_YAML_EXPANDED_NODES for a file you trust")
    return one_line(error)


def _parent_file(parent, child: Path, directory: Path) -> Path:
    """The file ``extends: parent`` of ``child`` names: a packaged experiment, or a .yaml path
    relative to ``child``'s folder."""
    if not isinstance(parent, str):
        raise ConfigError(f"{child}: 'extends' must name one experiment (a packaged name or a .yaml path), not {parent!r}")
    if is_experiment_file(parent):
        parent = str(child.parent / Path(parent).expanduser())
    try:
        return _experiment_file(parent, directory)[0]
    except ConfigError as error:
        raise ConfigError(f"{child}, key 'extends': {error}") from None


def _experiment_chain(path: Path, directory: Path) -> list[DictConfig]:
    """The experiment file and, parent first, the experiments it builds on through ``extends:``."""
    chain, seen = [], []
    while path is not None:
        if path.resolve() in seen:
            loop = " -> ".join(str(step.name) for step in [*seen, path.resolve()])
            raise ConfigError(f"experiment files extend each other in a loop ({loop}); remove one 'extends'")
        seen.append(path.resolve())
        content = _read_yaml(path)
        parent = content.pop("extends", None)
        chain.insert(0, content)
        path = None if parent is None else _parent_file(parent, path, directory)
    return chain


def load_config(
    experiment: str = DEFAULT_EXPERIMENT, overrides: list[str] = (), directory: Path = EXPERIMENTS_DIR
) -> DictConfig:
    """base.yaml -> the experiments the file extends -> the experiment's YAML -> ``key=value``
    overrides, validated.

    ``experiment`` is a packaged name (``fmnist_1w2u``) or a path to a user's own ``.yaml`` file,
    merged over the same packaged base.yaml; a file with ``extends: NAME`` is merged over
    experiment NAME (itself merged the same way). ``name`` (the run folder under ``run_dir``) is
    the packaged name, or the file's own ``name:`` key, or its stem.
    """
    path, name = _experiment_file(experiment, directory)
    command_line = _parse_overrides(overrides)
    files = [_read_yaml(directory / "base.yaml"), *_experiment_chain(path, directory)]
    cfg = _merge(OmegaConf.structured(ExperimentConfig), *files, {"name": files[-1].get("name", name)}, command_line)
    if not EXPERIMENT_NAME.fullmatch(cfg.name):
        raise ConfigError(f"bad value for 'name': {cfg.name!r}; a run folder's name (letters, digits, '_', '-', '.')")
    if len(cfg.name) > NAME_MAX:
        raise ConfigError(f"bad value for 'name': {len(cfg.name)} characters; a run folder's name holds at most {NAME_MAX}")
    validate(cfg)
    return cfg
