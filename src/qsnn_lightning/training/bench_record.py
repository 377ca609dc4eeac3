"""``neurobench: true``: a run's results.json carries ``qsnn bench``'s NeuroBench figures of the
weights its final test scored, measured by the same harness (``bench.harness.measure``) on the
first ``neurobench_samples`` of the test split. The package is checked before anything is read
or written, the sample count once the data is; the measuring runs after the final test, on the
CPU, as ``qsnn bench`` does, so a run without the setting costs nothing more.

``bench`` is imported on demand below: it loads NeuroBench (the optional extra) and the
exporter's footprint accounting, which a run without ``neurobench: true`` does not need.
"""

import copy

from omegaconf import DictConfig

from .module import QSNNClassifier

NEEDED_BY = "neurobench=true"  # what the missing-package line names as needing NeuroBench


def require_neurobench(cfg: DictConfig) -> None:
    """With ``neurobench: true``, the one-line refusal naming the pip command when NeuroBench is not installed."""
    if cfg.neurobench:
        from ..bench.harness import require_neurobench  # on demand: see the module's docstring

        require_neurobench(f"{NEEDED_BY} (NeuroBench's figures in results.json; or set neurobench=false)")


def check_neurobench_samples(cfg: DictConfig, datamodule) -> None:
    """With ``neurobench: true``, refuse (before training) ``neurobench_samples`` larger than the
    test split of a set-up ``datamodule``: the measuring would otherwise fail after the run."""
    if cfg.neurobench:
        from ..bench.harness import check_samples  # on demand: see the module's docstring

        check_samples(cfg.neurobench_samples, len(datamodule.test_set), "neurobench_samples=")


def neurobench_figures(cfg: DictConfig, module: QSNNClassifier) -> dict:
    """``qsnn bench``'s figures (without the checkpoint's name) of the module's backbone as it stands
    after the final test, copied to the CPU: the tested weights (the best checkpoint's, loaded by
    ``trainer.test``, or the last)."""
    from ..bench.harness import measure  # on demand: see the module's docstring

    backbone = copy.deepcopy(module.model).cpu()
    return measure(backbone, module.spec, cfg, cfg.neurobench_samples)
