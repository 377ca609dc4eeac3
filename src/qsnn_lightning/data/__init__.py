"""Datasets: shapes and class counts (`info`), Lightning DataModules, and the registry."""

from .info import DATASETS, dataset_info
from .static import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DatasetCorruptError,
    DatasetNotFoundError,
    FashionMNISTDataModule,
    TinyImageNetDataModule,
)

# Event-camera datasets (DVS-Gesture, CIFAR10-DVS) are registered names without a DataModule yet.
EVENT_DATASETS = ("dvsgesture", "dvscifar10")
DATAMODULES = {
    "fashionmnist": FashionMNISTDataModule,
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "tinyimagenet": TinyImageNetDataModule,
    **{name: None for name in EVENT_DATASETS},
}


class DataModuleUnavailableError(ValueError):
    """A registered dataset whose DataModule is not part of this version."""


def build_datamodule(name: str, **settings):
    """The DataModule of dataset ``name`` with the given settings (see ``DataConfig``)."""
    if name not in DATAMODULES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATAMODULES))}")
    datamodule = DATAMODULES[name]
    if datamodule is None:
        raise DataModuleUnavailableError(
            f"dataset {name!r} needs the event-camera DataModules, which are not in this version yet; "
            "train a static dataset (fashionmnist, cifar10, cifar100, tinyimagenet) meanwhile"
        )
    return datamodule(**settings)


__all__ = [
    "DATAMODULES", "DATASETS", "DataModuleUnavailableError", "DatasetCorruptError", "DatasetNotFoundError",
    "build_datamodule", "dataset_info",
]
