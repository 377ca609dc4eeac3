"""``qsnn bench``: a checkpoint measured by NeuroBench's harness on its test split (or its first N
samples), with the paper's deployed footprint beside NeuroBench's, written to ``neurobench.json``
beside the checkpoint. NeuroBench is the optional extra ``qsnn-lightning[neurobench]``."""

import importlib.util
import json
from importlib.metadata import version
from pathlib import Path

from torch.utils.data import DataLoader, Subset

from ..checkpoint import backbone_from_checkpoint, read_checkpoint
from ..data import EVENT_DATASETS, make_data
from ..errors import ExportError, MissingDependencyError, UsageError, one_line
from ..export.codegen import model_bytes
from ..export.integer_model import fold
from ..files import atomic_open
from ..snn.footprint import footprint_bytes
from ..snn.spec import ModelSpec
from ..training.config import refuse_model_overrides, refuse_overrides, restore_config

RESULTS_FILE = "neurobench.json"
INSTALL = "pip install 'qsnn-lightning[neurobench]' (or: pip install neurobench==2.3.0)"


def require_neurobench(needed_by: str = "qsnn bench"):
    """The module that runs NeuroBench (``neurobench_model``), or a one-line error saying what
    ``needed_by`` it (``qsnn bench``, a run's ``neurobench: true``) and naming the pip command."""
    if importlib.util.find_spec("neurobench") is None:
        raise MissingDependencyError(f"{needed_by} needs NeuroBench, which is not installed: {INSTALL}")
    from . import neurobench_model  # the optional dependency, loaded only for qsnn bench

    return neurobench_model


def check_samples(samples: int | None, available: int, setting: str = "--samples ") -> int:
    """How many test samples to measure: ``samples`` (None: all ``available``), refused in one line
    naming ``setting`` (``--samples `` or ``neurobench_samples=``) when the split holds fewer."""
    count = available if samples is None else samples
    if count > available:
        raise UsageError(f"{setting}{count} is more than the {available:,} samples of the test split; use {setting}"
                         f"{available} or fewer")
    return count


def split_loader(config, samples: int | None) -> DataLoader:
    """The first ``samples`` (None: all) of the experiment's test split, in order, in its batch size."""
    data = make_data(config)
    data.prepare_data()
    data.setup("test")
    count = check_samples(samples, len(data.test_set))
    return DataLoader(Subset(data.test_set, range(count)), batch_size=config.data.batch_size, shuffle=False)


def deployed_footprint(backbone, spec: ModelSpec, event_frames: bool) -> dict:
    """The paper's accounting of the model (``qsnn footprint``'s computation, batch 1): weights at their
    bits (1-bit hidden, 8-bit first and last, BatchNorm and biases at 32) plus the largest layer's
    k-bit membranes; and ``qsnn export``'s ``model_bytes`` (the C constants: folded per-channel int32
    constants instead of BatchNorm), None for a model the integer export cannot represent."""
    (total,), weights = footprint_bytes(backbone, backbone.input_shape, spec.precision.membrane_bits, [1])
    try:
        exported = model_bytes(fold(backbone, event_frames=event_frames))
    except ExportError:
        exported = None
    return {"deployed_bytes": total, "deployed_model_bytes": weights, "exported_model_bytes": exported}


def results_path(checkpoint: str) -> Path:
    """Where ``qsnn bench`` writes its report: ``neurobench.json`` beside the checkpoint."""
    return Path(checkpoint).parent / RESULTS_FILE


def bench_checkpoint(path: str, samples: int | None = None, overrides: list[str] = ()) -> dict:
    """NeuroBench's figures for a checkpoint on its test split (``samples``: the first N), with the
    deployed footprint; also written to ``neurobench.json`` beside the checkpoint."""
    if samples is not None and samples < 1:
        raise UsageError(f"--samples must be at least 1, got {samples} (leave it out for the whole test split)")
    require_neurobench()
    checkpoint = read_checkpoint(path)
    backbone, spec = backbone_from_checkpoint(checkpoint)
    refuse_model_overrides(overrides, "bench")
    refuse_overrides(overrides, "trainer", "qsnn bench runs no Trainer, so trainer.* settings do nothing; drop it")
    config = restore_config(checkpoint["hyper_parameters"]["experiment"], overrides, trainer=False)
    report = {
        "checkpoint": str(path),
        "experiment": config.name,
        "arch": spec.arch,
        "bits": spec.bits,
        **measure(backbone, spec, config, samples),
    }
    write_report(report, results_path(path))
    return report


def measure(backbone, spec: ModelSpec, config, samples: int | None = None) -> dict:
    """NeuroBench's figures for ``backbone`` (put in eval mode) on the first ``samples`` (None: all)
    of ``config``'s test split, with the deployed footprint: what ``qsnn bench`` reports of a
    checkpoint and a run with ``neurobench: true`` puts in its results.json."""
    runner = require_neurobench()
    backbone.eval()
    loader = split_loader(config, samples)
    results = runner.run_benchmark(backbone, loader)
    operations = results["SynapticOperations"]
    return {
        "samples": len(loader.dataset),
        "neurobench_version": version("neurobench"),
        "accuracy": results["ClassificationAccuracy"],
        "footprint_bytes_neurobench": runner.stored_footprint(backbone),
        **deployed_footprint(backbone, spec, config.data.name in EVENT_DATASETS),
        "connection_sparsity": results["ConnectionSparsity"],
        "activation_sparsity": results["ActivationSparsity"],
        "activation_sparsity_by_layer": results["LayerSparsity"],
        "effective_macs": operations["Effective_MACs"],
        "effective_acs": operations["Effective_ACs"],
        "dense_operations": operations["Dense"],
        "membrane_updates": results["MembraneUpdates"],
    }


def write_report(report: dict, target: Path) -> None:
    """``report`` as JSON at ``target``, whole or not at all."""
    try:
        with atomic_open(target, "w") as file:
            file.write(json.dumps(report, indent=2) + "\n")
    except OSError as error:
        raise UsageError(f"cannot write {target}: {one_line(error)}; copy the checkpoint into a writable folder") from None
