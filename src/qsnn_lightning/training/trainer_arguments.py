"""The ``trainer.*`` section of an experiment: any argument of ``lightning.Trainer`` that takes a
plain value, its name and value checked against the Trainer's signature and annotations, so a typo
or a value of the wrong kind is one line that names what is allowed."""

import difflib
import inspect
import types
import typing
from functools import cache

from ..errors import ConfigError

# Trainer arguments each run sets itself, with what to use instead.
OWNED_BY_THE_RUN = {
    "logger": "choose loggers with the top-level 'logger' key",
    "callbacks": "the run adds its checkpoints and monitors itself",
    "default_root_dir": "runs are written under 'run_dir'",
    "enable_checkpointing": "every run keeps checkpoints/best.ckpt and last.ckpt",
}
SCALARS = (bool, int, float, str)
# Lower bounds Lightning 2.6 leaves to the first batch (accumulate_grad_batches=0 divides by zero there).
# lower bounds of what Lightning takes but means nothing by (or checks only once fitting starts,
# or never, e.g. limits under fast_dev_run); -1 is Lightning's "no limit" / "all batches"
AT_LEAST = {"accumulate_grad_batches": 1, "log_every_n_steps": 1, "check_val_every_n_epoch": 1,
            "reload_dataloaders_every_n_epochs": 0, "min_epochs": 0, "min_steps": 0, "max_epochs": -1, "max_steps": -1,
            "gradient_clip_val": 0, "num_sanity_val_steps": -1, "limit_train_batches": 0, "limit_val_batches": 0,
            "limit_test_batches": 0, "limit_predict_batches": 0, "overfit_batches": 0, "fast_dev_run": 0}
ABOVE = {"val_check_interval": 0}  # strictly: Lightning takes 0 and validates on no schedule that means anything


def _is_union(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _takes_plain_values(hint) -> bool:
    """Whether a value from a YAML file or the command line can satisfy ``hint``."""
    origin = typing.get_origin(hint)
    if _is_union(hint):
        return any(_takes_plain_values(option) for option in typing.get_args(hint))
    if origin in (list, dict):
        return all(_takes_plain_values(arg) for arg in typing.get_args(hint))
    return origin is typing.Literal or hint in SCALARS


def accepts(hint, value) -> bool:
    """Whether ``value`` (a YAML scalar, list or mapping) is an instance of the annotation ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return value is None
    if _is_union(hint):
        return any(accepts(option, value) for option in args)
    if origin is typing.Literal:
        return any(value == choice and type(value) is type(choice) for choice in args)
    if origin is list:
        return isinstance(value, list) and all(accepts(args[0], item) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(accepts(args[0], k) and accepts(args[1], v) for k, v in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return hint in (bool, str) and isinstance(value, hint)


def describe(hint) -> str:
    """The plain values ``hint`` accepts, in words: ``int or null``, ``one of '16-mixed', ...``."""
    origin = typing.get_origin(hint)
    if _is_union(hint):
        options = typing.get_args(hint)
        literals = [option for option in options if typing.get_origin(option) is typing.Literal]
        choices = [repr(choice) for literal in literals for choice in typing.get_args(literal)]
        words = [f"one of {', '.join(choices)}"] if choices else []
        words += [describe(option) for option in options if _takes_plain_values(option) and option not in literals]
        return " or ".join(dict.fromkeys(words + (["null"] if type(None) in options else [])))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(hint))
    if origin in (list, dict):
        return f"a {origin.__name__} of {', '.join(describe(arg) for arg in typing.get_args(hint))}"
    return getattr(hint, "__name__", str(hint))


@cache
def trainer_arguments() -> dict[str, object]:
    """Name -> annotation of every ``lightning.Trainer`` argument a config may set."""
    import lightning as L  # late: only experiments with a trainer section need it

    hints = typing.get_type_hints(L.Trainer.__init__)
    return {
        name: hints[name] for name in inspect.signature(L.Trainer.__init__).parameters
        if name in hints and name not in OWNED_BY_THE_RUN and _takes_plain_values(hints[name])
    }


def check_trainer_arguments(settings: dict) -> None:
    """Raise ConfigError for a ``trainer.*`` key Lightning's Trainer does not take as a plain
    value, or a value its annotation does not allow."""
    allowed = trainer_arguments()
    for name, value in settings.items():
        if name in OWNED_BY_THE_RUN:
            raise ConfigError(f"'trainer.{name}' is set by every run; {OWNED_BY_THE_RUN[name]}")
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(
                f"unknown config key 'trainer.{name}': not an argument of lightning.Trainer; {hint}"
                f"valid keys in 'trainer': {', '.join(allowed)}"
            )
        if not accepts(allowed[name], value):
            raise ConfigError(f"bad value for 'trainer.{name}': {value!r}; lightning.Trainer takes {describe(allowed[name])}")
        if name in AT_LEAST and value is not None and value < AT_LEAST[name]:
            raise ConfigError(f"bad value for 'trainer.{name}': {value}; it must be >= {AT_LEAST[name]}")
        if name in ABOVE and value is not None and value <= ABOVE[name]:
            raise ConfigError(f"bad value for 'trainer.{name}': {value}; it must be > {ABOVE[name]}")

