"""Shared fixtures; the ``toolchain`` marker: a test that needs a microcontroller target's cross
compiler, C library and QEMU (``toolchain`` alone: the Cortex-M4's; ``toolchain("rv32")``: the
RISC-V one's) skips, naming the Debian packages to install, where they are absent; and the ``qsnn`` fixture's
subprocess runs (test_hostile_inputs.py): every case runs in process, and the first case of each
test once more with its first ``qsnn`` call as a real process (a process per call took minutes of the full tier)."""

import os

import pytest
import torchvision

from qsnn_lightning.export import ExportError
from qsnn_lightning.export.targets import PARTS, require_toolchain


def pytest_runtest_setup(item):
    """Skip a ``toolchain`` test when a program or library of one of its targets is missing, naming the
    packages to install (``toolchain("rv32", "cortex-m4")``: both targets')."""
    for marker in item.iter_markers("toolchain"):
        for target in marker.args or ("cortex-m4",):
            try:
                require_toolchain(target)
            except ExportError:
                packages = PARTS[target].packages
                pytest.skip(f"needs the Debian packages {packages} (apt-get install -y {packages})")


def pytest_collection_modifyitems(config, items):
    """Deselect the subprocess runs of a test's parametrized cases but the first collected."""
    kept, dropped, sampled = [], [], set()
    for item in items:
        callspec = getattr(item, "callspec", None)
        subprocess_run = callspec is not None and callspec.params.get("qsnn") == "subprocess"
        (dropped if subprocess_run and item.originalname in sampled else kept).append(item)
        if subprocess_run:
            sampled.add(item.originalname)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def cifar_without_md5(monkeypatch):
    """Let torchvision accept CIFAR files that are not the published ones (its md5 check, test-only)."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
