"""Hyper-parameter sweeps, read from W&B sweep files (``experiments/sweeps/<name>.yaml``).

One file serves both ways of running a sweep:

- online, :func:`run_wandb` registers the file with ``wandb sweep`` and runs ``wandb agent``, which
  starts the file's ``command`` (``qsnn train <experiment> logger=wandb <point>``) per point;
- offline, :func:`run_local` runs the same grid in this process, one training run per point, into
  ``<root>/<sweep>/<point>/``, and writes ``summary.csv`` and ``accuracy_vs_<parameter>.png``.

Both resume: W&B's grid skips the points its sweep has finished (the sweep id is kept in the sweep
directory), and the local runner skips points that have a ``results.json`` and continues an
interrupted point from its ``last.ckpt``.
"""

import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..errors import SweepError, first_line
from ..files import atomic_open
from ..snn.losses import hidden_layers
from ..snn.precision import Precision
from .analysis import stored_level_statistics
from .build import has_wandb_key
from .config import EXPERIMENT_NAME, EXPERIMENTS_DIR, NAME_MAX, load_config
from .train import train

SWEEPS_DIR = EXPERIMENTS_DIR / "sweeps"
POINT_ARGUMENTS = "${args_no_hyphens}"  # where W&B puts a point's key=value arguments in the command
SUMMARY = "summary.csv"


@dataclass(frozen=True)
class Sweep:
    """A grid sweep: ``experiment`` with the ``fixed`` overrides of the command, crossed with
    every combination of ``parameters`` (key -> values, in file order)."""

    name: str
    experiment: str
    fixed: tuple[str, ...]
    parameters: dict[str, list]
    wandb_config: dict

    def points(self) -> list[dict[str, Any]]:
        """Every grid point, the last parameter varying fastest (W&B's grid order)."""
        keys = list(self.parameters)
        return [dict(zip(keys, values)) for values in itertools.product(*self.parameters.values())]


def sweep_names(directory: Path = SWEEPS_DIR) -> list[str]:
    """The packaged sweeps' names."""
    return sorted(path.stem for path in directory.glob("*.yaml"))


def load_sweep(name: str, directory: Path = SWEEPS_DIR) -> Sweep:
    """The sweep ``experiments/sweeps/<name>.yaml`` (or a path to a sweep file)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else directory / f"{name}.yaml"
    if not path.is_file():
        raise SweepError(f"unknown sweep {name!r}; choose one of {', '.join(sweep_names(directory))} (files in {directory})")
    try:
        config = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as error:
        raise SweepError(f"cannot read sweep file {path}: {first_line(error)}") from None
    if not isinstance(config, dict):
        raise SweepError(f"{path} must hold a mapping (method, parameters, command), not a {type(config).__name__}")
    if config.get("method") != "grid":
        raise SweepError(f"{path}: method is {config.get('method')!r}; the sweeps here are grids (method: grid)")
    name = str(config.get("name", path.stem))
    if not EXPERIMENT_NAME.fullmatch(name) or len(name) > NAME_MAX:
        raise SweepError(f"{path}: bad name {name!r}; a sweep's name is a folder name (letters, digits, '_', '-', '.')")
    return Sweep(name, *_command(config.get("command"), path), _grid(config.get("parameters"), path), config)


def _grid(parameters, path: Path) -> dict[str, list]:
    """A sweep file's ``parameters`` as key -> the list of its grid values."""
    if not isinstance(parameters, dict) or not parameters:
        raise SweepError(f"{path}: parameters must map each key to 'values: [...]', e.g. parameters: {{loss.lam: {{values: [0, 0.001]}}}}")
    grid = {}
    for key, spec in parameters.items():
        values = spec.get("values", [spec["value"]] if "value" in spec else None) if isinstance(spec, dict) else None
        if not isinstance(values, list) or not values:
            raise SweepError(f"{path}: parameter {key!r} needs 'values: [...]' (a list) or 'value: x' for a grid")
        grid[key] = values
    return grid


def _command(command, path: Path) -> tuple[str, tuple[str, ...]]:
    """The experiment and the fixed ``key=value`` overrides of a sweep file's ``command``."""
    command = [str(part) for part in command] if isinstance(command, list) else []
    if "train" not in command or command.index("train") + 1 >= len(command) or POINT_ARGUMENTS not in command:
        raise SweepError(f"{path}: command must read [${{env}}, qsnn, train, <experiment>, ..., {POINT_ARGUMENTS}]")
    experiment = command[command.index("train") + 1]
    return experiment, tuple(part for part in command[command.index("train") + 2:] if "=" in part and not part.startswith("$"))


def point_overrides(point: dict[str, Any]) -> list[str]:
    """A grid point as ``key=value`` overrides."""
    return [f"{key}={value}" for key, value in point.items()]


def point_directory_name(point: dict[str, Any]) -> str:
    """The folder of a grid point's runs: its overrides joined by ``__`` (no ``/``)."""
    return "__".join(point_overrides(point)).replace("/", "_")


def _local_overrides(sweep: Sweep, overrides: list[str]) -> list[str]:
    """The command's fixed overrides except its logger (a local sweep logs CSV unless the user's
    overrides say otherwise, e.g. ``logger=wandb`` for offline W&B runs), then the user's."""
    return [item for item in sweep.fixed if not item.startswith("logger=")] + list(overrides)


def _claim_directory(sweep: Sweep, overrides: list[str], sweep_dir: Path) -> None:
    """Record the sweep and its overrides, or refuse to mix points run with other overrides."""
    manifest = sweep_dir / "sweep.json"
    wanted = {"sweep": sweep.name, "experiment": sweep.experiment, "overrides": list(overrides)}
    if manifest.is_file():
        recorded = _read_json(manifest)
        if not isinstance(recorded, dict):
            raise SweepError(f"{manifest} is damaged (not the JSON a sweep writes); delete it to go on with this folder's points "
                             "under these overrides, or pass another --dir")
        if recorded != wanted:
            raise SweepError(
                f"{sweep_dir} holds sweep {recorded.get('sweep')!r} run with overrides {recorded.get('overrides')}; "
                f"rerun with the same overrides to resume it, or pass another --dir for {overrides}"
            )
        return
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(manifest, "w") as file:
        file.write(json.dumps(wanted, indent=2) + "\n")


def _read_json(path: Path):
    """The JSON in ``path``, or None where it is truncated or not JSON."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _finished_results(point_dir: Path) -> dict | None:
    """The newest complete ``results.json`` of a point (a truncated one counts as unfinished: the point runs again)."""
    for path in sorted(point_dir.glob("*/*/results.json"), reverse=True):
        results = _read_json(path)
        if isinstance(results, dict) and "test_acc" in results:
            return results
    return None


def _interrupted_checkpoint(point_dir: Path) -> Path | None:
    checkpoints = sorted(point_dir.glob("*/*/checkpoints/last.ckpt"))
    return checkpoints[-1] if checkpoints else None


def sweep_root(directory: str | None, overrides: list[str]) -> Path:
    """Where a sweep's folder goes: ``--dir`` when given, else ``<run_dir>/sweeps`` for a
    ``run_dir=`` override, else ``runs/sweeps``."""
    if directory:
        return Path(directory)
    run_dirs = [item.split("=", 1)[1] for item in overrides if item.startswith("run_dir=")]
    return Path(run_dirs[-1] if run_dirs else "runs") / "sweeps"


def run_local(sweep: Sweep, overrides: list[str] = (), root: Path = Path("runs/sweeps"), log=print) -> list[dict]:
    """Run every grid point not finished yet, then write the summary CSV and plot; returns the
    summary rows. All points' configurations are validated before the first run starts."""
    overrides = list(overrides)
    sweep_dir = root / sweep.name
    points = sweep.points()
    base = _local_overrides(sweep, overrides)
    configs = [load_config(sweep.experiment, [*base, *point_overrides(point)]) for point in points]
    _claim_directory(sweep, overrides, sweep_dir)
    rows = []
    for number, (point, cfg) in enumerate(zip(points, configs), start=1):
        point_dir = sweep_dir / point_directory_name(point)
        results = _finished_results(point_dir)
        label = f"[{number}/{len(points)}] {' '.join(point_overrides(point))}"
        if results is None:
            resume = _interrupted_checkpoint(point_dir)
            log(f"{label}: {'resuming from ' + str(resume) if resume else 'training'}")
            cfg.run_dir = str(point_dir)
            cfg.ckpt_path = str(resume) if resume else None
            results = train(cfg)
        else:
            log(f"{label}: finished earlier, test accuracy {results['test_acc']:.4f}")
        rows.append(summary_row(point, results))
    write_summary(rows, sweep_dir / SUMMARY)
    plot_summary(rows, list(sweep.parameters), sweep_dir)
    return rows


def summary_row(point: dict[str, Any], results: dict) -> dict:
    """One line of the summary: the point, k, accuracies, the mean hidden-layer firing rate (the
    layers Eq. 15 regularizes), NeuroBench's effective ACs per sample where the run measured them
    (``neurobench: true``: the accumulates the spike term saves) and what the stored membranes held
    (share not at level 0, level entropy), from the last validation epoch."""
    rates = list(results.get("val_firing_rates", {}).values())
    hidden = hidden_layers(rates)
    neurobench = {"effective_acs": results["neurobench"]["effective_acs"]} if "neurobench" in results else {}
    return {
        **point,
        "k": Precision.parse(results["bits"]).membrane_bits,
        "test_acc": results["test_acc"],
        "val_acc_best": results["val_acc_best"],
        "hidden_firing_rate": sum(hidden) / len(hidden) if hidden else None,
        **neurobench,
        **stored_level_statistics(results["run_dir"]),
        "run_dir": results["run_dir"],
    }


def write_summary(rows: list[dict], path: Path) -> None:
    """``summary.csv``: one row per point, written atomically; a column some points lack (``effective_acs``
    of points run without ``neurobench: true``) is empty in their rows."""
    columns = list(dict.fromkeys(column for row in rows for column in row))
    with atomic_open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def plot_summary(rows: list[dict], parameters: list[str], sweep_dir: Path) -> Path:
    """Test accuracy and hidden firing rate against the first parameter, one line per value of the
    others; a symmetric-log axis when the values include 0 (lambda = 0), one tick per value when
    they are names (``model.membrane_scale``)."""
    import matplotlib  # on demand: pyplot only once the Agg backend is chosen, and only to draw

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    x_key, series_keys = parameters[0], parameters[1:]
    names = list(dict.fromkeys(row[x_key] for row in rows))
    numeric = all(isinstance(name, (int, float)) and not isinstance(name, bool) for name in names)

    def position(value) -> float:
        return float(value) if numeric else float(names.index(value))

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    series = {}
    for row in rows:
        series.setdefault(tuple(row[key] for key in series_keys), []).append(row)
    for label, points in series.items():
        name = ", ".join(f"{key}={value}" for key, value in zip(series_keys, label)) or "all"
        xs = [position(point[x_key]) for point in points]
        axes[0].plot(xs, [point["test_acc"] for point in points], marker="o", label=name)
        axes[1].plot(xs, [point["hidden_firing_rate"] for point in points], marker="o", label=name)
    positive = [float(row[x_key]) for row in rows if numeric and float(row[x_key]) > 0]
    for axis, quantity in zip(axes, ("test accuracy", "hidden-layer firing rate (val)")):
        if not numeric:
            axis.set_xticks(range(len(names)), [str(name) for name in names])
        elif positive and min(float(row[x_key]) for row in rows) == 0:
            axis.set_xscale("symlog", linthresh=min(positive))
        elif positive and len(positive) == len(rows):
            axis.set_xscale("log")
        axis.set_xlabel(x_key)
        axis.set_ylabel(quantity)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    path = sweep_dir / f"accuracy_vs_{x_key.rsplit('.', 1)[-1]}.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def run_wandb(sweep: Sweep, overrides: list[str] = (), root: Path = Path("runs/sweeps"), log=print) -> str:
    """Register the sweep with W&B (once; its id is kept in ``<root>/<sweep>/wandb_sweep_id`` so a
    rerun resumes it) and run an agent on it; returns the sweep id. Needs an API key."""
    if not has_wandb_key():
        raise SweepError(
            "W&B sweeps need an API key and network: run `wandb login` (or set WANDB_API_KEY), "
            "or run the same grid offline with LOCAL=1 (qsnn sweep NAME --local)"
        )
    import wandb  # on demand: only an online sweep needs it, and importing it takes seconds

    project = load_config(sweep.experiment, list(overrides)).wandb_project
    sweep_dir = root / sweep.name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    id_file = sweep_dir / "wandb_sweep_id"
    if id_file.is_file():
        sweep_id = id_file.read_text().strip()
        log(f"resuming W&B sweep {sweep_id}")
    else:
        config = dict(sweep.wandb_config)
        command = list(config["command"])
        at = command.index(POINT_ARGUMENTS)
        config["command"] = [*command[:at], *overrides, *command[at:]]
        sweep_id = wandb.sweep(sweep=config, project=project)
        id_file.write_text(sweep_id + "\n")
    bin_dir = str(Path(sys.executable).parent)  # where `qsnn` and `wandb` of this environment live
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    agent = shutil.which("wandb", path=env["PATH"]) or "wandb"
    finished = subprocess.run([agent, "agent", "--project", project, sweep_id], env=env)
    if finished.returncode != 0:
        raise SweepError(f"wandb agent stopped with exit status {finished.returncode}; rerun to resume sweep {sweep_id}")
    return sweep_id
