"""The Lightning DataModules training uses: each is its torch-only dataset class (which brings
its own ``prepare_data``, ``setup`` and loaders) made a ``LightningDataModule``, whose
hyperparameters (logged, kept in checkpoints) are the class's ``settings``. The only module of
the data package that imports Lightning."""

from lightning import LightningDataModule
from omegaconf import DictConfig

from . import build_data, make_data
from .events import CIFAR10DVSData, DVSGestureData
from .nfmnist import NFashionMNISTData
from .static import CIFAR10Data, CIFAR100Data, FashionMNISTData, TinyImageNetData


class SavedSettings:
    """The first base of every DataModule below: once its dataset class is made, its ``settings``
    become Lightning's ``hparams``. (The dataset class comes next, ``LightningDataModule`` last, so
    the dataset's hooks win over Lightning's empty ones.)"""

    def __init__(self, **settings):
        super().__init__(**settings)
        self.save_hyperparameters(vars(self.settings))


class FashionMNISTDataModule(SavedSettings, FashionMNISTData, LightningDataModule):
    """:class:`~.static.FashionMNISTData` as a LightningDataModule."""


class CIFAR10DataModule(SavedSettings, CIFAR10Data, LightningDataModule):
    """:class:`~.static.CIFAR10Data` as a LightningDataModule."""


class CIFAR100DataModule(SavedSettings, CIFAR100Data, LightningDataModule):
    """:class:`~.static.CIFAR100Data` as a LightningDataModule."""


class TinyImageNetDataModule(SavedSettings, TinyImageNetData, LightningDataModule):
    """:class:`~.static.TinyImageNetData` as a LightningDataModule."""


class DVSGestureDataModule(SavedSettings, DVSGestureData, LightningDataModule):
    """:class:`~.events.DVSGestureData` as a LightningDataModule."""


class CIFAR10DVSDataModule(SavedSettings, CIFAR10DVSData, LightningDataModule):
    """:class:`~.events.CIFAR10DVSData` as a LightningDataModule."""


class NFashionMNISTDataModule(SavedSettings, NFashionMNISTData, LightningDataModule):
    """:class:`~.nfmnist.NFashionMNISTData` as a LightningDataModule."""


DATAMODULES = {  # dataset name -> DataModule, the same names as the torch-only registry DATA
    module.name: module for module in (
        FashionMNISTDataModule, CIFAR10DataModule, CIFAR100DataModule, TinyImageNetDataModule, DVSGestureDataModule,
        CIFAR10DVSDataModule, NFashionMNISTDataModule,
    )
}


def build_datamodule(name: str, **settings) -> LightningDataModule:
    """The DataModule of dataset ``name`` with the given settings (see :func:`~qsnn_lightning.data.dataset_arguments`)."""
    return build_data(name, DATAMODULES, **settings)


def make_datamodule(cfg: DictConfig) -> LightningDataModule:
    """The DataModule of an experiment configuration (``data`` section, ``seed``, ``model.timesteps``)."""
    return make_data(cfg, DATAMODULES)
