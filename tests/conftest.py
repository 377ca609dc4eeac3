"""Shared fixtures, and the ``toolchain`` marker: a test that needs the Cortex-M4 cross compiler and
QEMU skips, naming the Debian packages to install, where they are absent."""

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


@pytest.fixture
def cifar_without_md5(monkeypatch):
    """Let torchvision accept CIFAR files that are not the published ones (its md5 check, test-only)."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
