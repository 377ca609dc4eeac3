"""Datasets, with torch alone: shapes and class counts (`info`), the dataset classes that find,
download and read each dataset's files into torch Datasets and DataLoaders, and their registry.
The Lightning DataModules around them (for training) are in :mod:`.modules`."""

from omegaconf import DictConfig, OmegaConf

from .events import CIFAR10DVSData, DVSGestureData, EventData
from .info import DATASETS, dataset_info
from .nfmnist import NFashionMNISTData
from .static import CIFAR10Data, CIFAR100Data, FashionMNISTData, StaticImageData, TinyImageNetData

DATA = {  # dataset name (each class's ``name``) -> its class
    data.name: data for data in (
        FashionMNISTData, CIFAR10Data, CIFAR100Data, TinyImageNetData, DVSGestureData, CIFAR10DVSData, NFashionMNISTData,
    )
}
EVENT_DATASETS = tuple(name for name, data in DATA.items() if issubclass(data, EventData))


def dataset_arguments(name: str, *, timesteps: int | None = None, events: dict | None = None, **settings) -> dict:
    """The constructor arguments of dataset ``name``'s class for the given settings (see ``DataConfig``).

    Event datasets also take the model's ``timesteps`` (frames per sample) and the ``events``
    settings (``EventConfig``); static datasets ignore both. Raises ValueError for an unknown name.
    """
    if name not in DATA:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATA))}")
    if name in EVENT_DATASETS:
        if timesteps is not None:
            settings["timesteps"] = timesteps
        settings.update(events or {})
    return settings


def experiment_dataset(cfg: DictConfig) -> tuple[str, dict]:
    """The dataset of an experiment configuration: its name and its class's constructor arguments
    (from the ``data`` section, ``seed`` and ``model.timesteps``)."""
    settings = OmegaConf.to_container(cfg.data, resolve=True)
    name = settings.pop("name")
    return name, dataset_arguments(name, seed=cfg.seed, timesteps=cfg.model.timesteps, **settings)


def build_data(name: str, registry: dict = DATA, /, **settings) -> StaticImageData:
    """The dataset class of ``name`` in ``registry`` (the torch-only classes; :mod:`.modules` passes
    its DataModules) made with the given settings (see :func:`dataset_arguments`)."""
    arguments = dataset_arguments(name, **settings)  # first: an unknown name is its ValueError
    return registry[name](**arguments)


def make_data(cfg: DictConfig, registry: dict = DATA) -> StaticImageData:
    """The dataset of an experiment configuration, from ``registry`` (default: the torch-only
    classes, what the exporter reads its test samples from)."""
    name, arguments = experiment_dataset(cfg)
    return registry[name](**arguments)


__all__ = [
    "DATA", "DATASETS", "EVENT_DATASETS", "CIFAR10DVSData", "CIFAR10Data", "CIFAR100Data", "DVSGestureData",
    "EventData", "FashionMNISTData", "NFashionMNISTData", "StaticImageData", "TinyImageNetData", "build_data",
    "dataset_arguments", "dataset_info", "experiment_dataset", "make_data",
]
