"""Datasets: shapes and class counts (`info`), Lightning DataModules, and the registry."""

from omegaconf import DictConfig, OmegaConf

from .events import CIFAR10DVSDataModule, DVSGestureDataModule, EventDataModule
from .info import DATASETS, dataset_info
from .nfmnist import NFashionMNISTDataModule
from .static import CIFAR10DataModule, CIFAR100DataModule, FashionMNISTDataModule, TinyImageNetDataModule

DATAMODULES = {
    "fashionmnist": FashionMNISTDataModule,
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "tinyimagenet": TinyImageNetDataModule,
    "dvsgesture": DVSGestureDataModule,
    "dvscifar10": CIFAR10DVSDataModule,
    "nfashionmnist": NFashionMNISTDataModule,
}
EVENT_DATASETS = tuple(name for name, datamodule in DATAMODULES.items() if issubclass(datamodule, EventDataModule))


def build_datamodule(name: str, *, timesteps: int | None = None, events: dict | None = None, **settings):
    """The DataModule of dataset ``name`` with the given settings (see ``DataConfig``).

    Event datasets also take the model's ``timesteps`` (frames per sample) and the ``events``
    settings (``EventConfig``); static datasets ignore both.
    """
    if name not in DATAMODULES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATAMODULES))}")
    if name in EVENT_DATASETS:
        if timesteps is not None:
            settings["timesteps"] = timesteps
        settings.update(events or {})
    return DATAMODULES[name](**settings)


def make_datamodule(cfg: DictConfig):
    """The DataModule of an experiment configuration (``data`` section, ``seed``, ``model.timesteps``)."""
    settings = OmegaConf.to_container(cfg.data, resolve=True)
    name = settings.pop("name")
    return build_datamodule(name, seed=cfg.seed, timesteps=cfg.model.timesteps, **settings)


__all__ = [
    "DATAMODULES", "DATASETS", "EVENT_DATASETS", "build_datamodule", "dataset_info", "make_datamodule",
]
