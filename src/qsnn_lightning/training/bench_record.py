"""``neurobench: true``: a run's results.json carries ``qsnn bench``'s NeuroBench figures of the
weights its final test scored, measured by the same harness (``bench.harness.measure``) on the
first ``neurobench_samples`` of the test split. The package is checked before anything is read
or written, the sample count once the data is; the measuring runs after the final test, on the
CPU, as ``qsnn bench`` does, so a run without the setting costs nothing more (NeuroBench itself,
the optional extra, is loaded only when measuring).
"""

import copy

from omegaconf import DictConfig

from ..bench.harness import check_samples, measure
from ..bench.harness import require_neurobench as require_package
from .module import QSNNClassifier

NEEDED_BY = "neurobench=true"  # what the missing-package line names as needing NeuroBench


def require_neurobench(cfg: DictConfig) -> None:
    """With ``neurobench: true``, the one-line refusal naming the pip command when NeuroBench is not installed."""
    if cfg.neurobench:
        require_package(f"{NEEDED_BY} (NeuroBench's figures in results.json; or set neurobench=false)")


def check_neurobench_samples(cfg: DictConfig, datamodule) -> None:
    """With ``neurobench: true``, refuse (before training) ``neurobench_samples`` larger than the
    test split of a set-up ``datamodule``: the measuring would otherwise fail after the run."""
    if cfg.neurobench:
        check_samples(cfg.neurobench_samples, len(datamodule.test_set), "neurobench_samples=")


def neurobench_figures(cfg: DictConfig, module: QSNNClassifier) -> dict:
    """``qsnn bench``'s figures (without the checkpoint's name) of the module's backbone as it stands
    after the final test, copied to the CPU: the tested weights (the best checkpoint's, loaded by
    ``trainer.test``, or the last)."""
    backbone = copy.deepcopy(module.model).cpu()
    return measure(backbone, module.spec, cfg, cfg.neurobench_samples)
