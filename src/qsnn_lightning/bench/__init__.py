"""``qsnn bench``: a checkpoint measured in NeuroBench's terms (accuracy, footprint, connection and
activation sparsity, synaptic operations, membrane updates) by NeuroBench's own harness, with the
paper's deployed footprint beside its figure. ``view`` presents the network as NeuroBench reads it,
``neurobench_model`` runs NeuroBench (the optional extra), ``harness`` the command, ``report`` its table."""

from .harness import RESULTS_FILE, bench_checkpoint, results_path
from .report import format_report

__all__ = ["RESULTS_FILE", "bench_checkpoint", "format_report", "results_path"]
