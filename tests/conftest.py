"""Shared fixtures; the ``toolchain`` marker: a test that needs the Cortex-M4 cross compiler and
QEMU skips, naming the Debian packages to install, where they are absent; and the ``qsnn`` fixture's
subprocess runs (test_hostile_inputs.py): every case runs in process, and the first case of each
test also as a real ``qsnn`` process (a process per case took minutes of the full tier)."""

import os
import shutil

import pytest
import torchvision

TOOLCHAIN = {"arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi", "qemu-system-arm": "qemu-system-arm"}


def pytest_runtest_setup(item):
    """Skip a ``toolchain`` test when a program it needs is missing, naming the packages to install."""
    if item.get_closest_marker("toolchain"):
        missing = [packages for program, packages in TOOLCHAIN.items() if shutil.which(program) is None]
        if missing:
            pytest.skip(f"needs the Debian packages {' '.join(missing)} (apt-get install -y {' '.join(missing)})")


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
