"""The table ``qsnn bench`` prints: NeuroBench's figures and the deployed footprint, labelled, per sample."""

from ..snn.precision import Precision


def _count(value: float) -> str:
    return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"


def format_report(report: dict) -> str:
    """The report of :func:`~.harness.bench_checkpoint` as aligned ``label  value`` lines."""
    membrane_bits = Precision.parse(report["bits"]).membrane_bits
    exported = report["exported_model_bytes"]
    rows = [
        ("accuracy", f"{100 * report['accuracy']:.2f}%"),
        ("footprint, NeuroBench (as stored: latent fp32 weights)", f"{report['footprint_bytes_neurobench']:,} bytes"),
        (f"footprint, deployed (1-bit hidden, 8-bit first/last weights, {membrane_bits}-bit membranes, batch 1)",
         f"{_count(report['deployed_bytes'])} bytes"),
        ("  of which weights (qsnn footprint's model size)", f"{_count(report['deployed_model_bytes'])} bytes"),
        ("exported model (qsnn export's model_bytes, C constants)", "not exportable" if exported is None else f"{exported:,} bytes"),
        ("connection sparsity (deployed weights)", f"{report['connection_sparsity']:.4f}"),
        ("activation sparsity", f"{report['activation_sparsity']:.4f}"),
        *((f"  {layer}", f"{sparsity:.4f}") for layer, sparsity in report["activation_sparsity_by_layer"].items()),
        ("synaptic operations per sample: effective MACs", _count(report["effective_macs"])),
        ("  effective ACs", _count(report["effective_acs"])),
        ("  dense", _count(report["dense_operations"])),
        ("membrane updates per sample", _count(report["membrane_updates"])),
    ]
    width = max(len(label) for label, _ in rows) + 2
    title = (f"NeuroBench {report['neurobench_version']}: {report['experiment']} ({report['arch']} {report['bits']}), "
             f"{report['samples']:,} test samples")
    return "\n".join([title, *(f"{label:<{width}}{value}" for label, value in rows)])
