"""The package's layout: imports point one way (no cycle, also through imports inside functions),
and the spiking core and the exporter load only what they need (the exporter neither Lightning
nor torchmetrics)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import qsnn_lightning
from checkpoint_files import write_untrained_checkpoint

PACKAGE = Path(qsnn_lightning.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports anywhere in its body: ``from . import x`` names
    module ``x`` where it is one, else the package."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join(anchor + ([node.module] if node.module else []))
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
    return (found & modules) - {name}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(paths)) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as a path that ends where it starts; [] when there is none."""
    state, path = {}, []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_a_cycle_and_resolves_relative_imports(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    assert "qsnn_lightning.training.build" in graph["qsnn_lightning.training.train"]  # from .build import ...
    assert "qsnn_lightning.snn.neurons" in graph["qsnn_lightning.snn.lean"]


def test_imports_have_no_cycle():
    assert find_cycle(import_graph()) == []


def test_packages_import_downwards_only():
    """cli -> training, export -> data, checkpoint -> snn -> torch: snn imports none of the others,
    data neither snn nor training, the torch-only checkpoint reader only snn, export not the
    training driver."""
    rules = {"snn": ("data", "training", "export", "cli"), "data": ("snn", "training", "export", "cli"),
             "checkpoint": ("data", "training", "export", "cli"), "training": ("export", "cli"),
             "export": ("training.train", "training.sweep", "cli")}
    for module, imports in import_graph().items():
        floor = (module.split(".") + [""])[1]  # "" for the package itself
        for forbidden in rules.get(floor, ()):
            assert not any(target.startswith(f"qsnn_lightning.{forbidden}") for target in imports), (module, forbidden)


def imported_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after ``statement``."""
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_spiking_core_needs_only_torch():
    modules = imported_after(
        "import qsnn_lightning.snn.backbones, qsnn_lightning.snn.footprint, qsnn_lightning.snn.losses, "
        "qsnn_lightning.snn.fused_lif"
    )
    assert "torch" in modules
    assert not {"lightning", "pytorch_lightning", "omegaconf", "torchvision", "torchmetrics"} & modules
    assert not any(name.startswith(("qsnn_lightning.training", "qsnn_lightning.data")) for name in modules)


LIGHTNING = {"lightning", "pytorch_lightning", "lightning_fabric", "torchmetrics"}


def test_the_exporter_does_not_import_the_training_driver():
    modules = imported_after("import qsnn_lightning.export.writer")
    assert {"qsnn_lightning.checkpoint", "qsnn_lightning.data", "qsnn_lightning.training.config"} <= modules
    training = {"qsnn_lightning.training.checkpoint", "qsnn_lightning.training.module", "qsnn_lightning.data.modules",
                "qsnn_lightning.training.train", "qsnn_lightning.training.sweep"}
    assert not (training | LIGHTNING) & modules


def test_exporting_a_checkpoint_with_test_samples_loads_neither_lightning_nor_torchmetrics(tmp_path):
    checkpoint, _ = write_untrained_checkpoint(tmp_path)
    out = tmp_path / "export"
    modules = imported_after("from qsnn_lightning.export.writer import export_checkpoint; "
                             f"export_checkpoint({str(checkpoint)!r}, {str(out)!r}, samples=3)")
    assert json.loads((out / "manifest.json").read_text())["samples"] == 3
    assert len((out / "expected.txt").read_text().splitlines()) == 3 and (out / "samples.bin").stat().st_size == 3 * 784
    assert "qsnn_lightning.data.static" in modules  # the samples were read from the dataset's files
    assert not LIGHTNING & modules
