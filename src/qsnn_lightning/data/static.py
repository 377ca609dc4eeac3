"""Static image datasets, with torch alone: Fashion-MNIST, CIFAR-10/100 and TinyImageNet (the
Lightning DataModules around them are in :mod:`.modules`).

Every dataset class yields ordinary ``(image [B, C, H, W] float32, label int64)`` batches; the
spiking model repeats the image over its time steps itself. Downloads happen only in
``prepare_data``; ``setup`` only reads what is on disk. A dataset that is absent raises
:class:`DatasetNotFoundError`, an unreadable file raises :class:`DatasetCorruptError`; both carry a
one-line message that says which file is at fault and what to do about it.

The training split of each dataset is divided into train and validation parts by a seeded
permutation; the validation part uses the evaluation transforms. The test split is the dataset's
official test set (for TinyImageNet: the official ``val`` folder, whose labels are public).
"""

import gzip
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from urllib.error import URLError

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity, download_and_extract_archive

from ..errors import DatasetCorruptError, DatasetNotFoundError, one_line
from .info import dataset_info

DEFAULT_DATA_DIR = Path("~/.cache/qsnn_lightning/data")
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
IDX_IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read an idx file (gzipped when its name ends in ``.gz``) into a uint8 array shaped by its header.

    Raises :class:`DatasetCorruptError` naming ``path`` when the file is not valid gzip, has the wrong
    magic number, or holds a different number of bytes than its header announces.
    """

    def corrupt(detail: str) -> DatasetCorruptError:
        return DatasetCorruptError(f"{path} is corrupt or truncated: {detail}; delete it and fetch it again")

    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise corrupt(f"gzip says {one_line(error)}") from None
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != expected_magic:
        raise corrupt(f"magic number is not {expected_magic}")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise corrupt("header ends early")
    shape = tuple(int(size) for size in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) - header_size != int(np.prod(shape)):
        raise corrupt(f"header announces {int(np.prod(shape))} data bytes, file holds {len(raw) - header_size}")
    return np.frombuffer(raw, np.uint8, offset=header_size).reshape(shape)


class Cutout:
    """Zero one ``size`` x ``size`` square of a ``[C, H, W]`` tensor, centred at a uniformly random pixel.

    As in DeVries & Taylor (2017) the square is clipped where it crosses the image border.
    """

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        _, height, width = image.shape
        center_y, center_x = int(torch.randint(height, ())), int(torch.randint(width, ()))
        top, left = max(center_y - self.size // 2, 0), max(center_x - self.size // 2, 0)
        bottom, right = center_y - self.size // 2 + self.size, center_x - self.size // 2 + self.size
        image = image.clone()
        image[:, top:bottom, left:right] = 0
        return image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


class ImageArrayDataset(Dataset):
    """``(PIL image, label)`` pairs from a uint8 array ``[N, H, W]`` and a label array ``[N]``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), int(self.labels[index])


class ImageFileDataset(Dataset):
    """``(RGB PIL image, label)`` pairs from a list of ``(image path, label)``."""

    def __init__(self, samples: list[tuple[Path, int]]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB"), label
        except OSError as error:
            raise DatasetCorruptError(f"image {path} cannot be read: {one_line(error)}") from None


class NormalizedArraySubset(Dataset):
    """The samples of :class:`ImageArrayDataset` at ``indices`` through the evaluation transform,
    a batch at a time: the DataLoader calls ``__getitems__`` with a batch's indices.

    ``x = (images[i] / 255 - mean) / std``, the same float32 operations as ToTensor then
    Normalize, so the values are those of the PIL path, without one PIL image per sample.
    """

    def __init__(self, source: ImageArrayDataset, indices: Sequence[int], mean: Sequence[float], std: Sequence[float]):
        self.source, self.indices = source, np.asarray(indices, dtype=np.int64)
        self.mean, self.std = list(mean), list(std)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, batch: list[int]) -> list[tuple[torch.Tensor, int]]:
        rows = self.indices[batch]
        images = torch.from_numpy(self.source.images[rows]).unsqueeze(1).to(torch.float32).div(255)
        images = transforms.functional.normalize(images, self.mean, self.std)
        return list(zip(images, self.source.labels[rows].tolist()))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.__getitems__([index])[0]


class TransformedSubset(Dataset):
    """The samples of ``source`` at ``indices``, images passed through ``transform``."""

    def __init__(self, source: Dataset, indices: Sequence[int], transform: Callable):
        self.source, self.indices, self.transform = source, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.source[self.indices[index]]
        return self.transform(image), int(label)


class StaticImageData:
    """Shared logic: file checks, downloads, the seeded train/val split, transforms and loaders,
    with the hooks of a LightningDataModule (``prepare_data``, ``setup``, ``*_dataloader``) and
    its constructor arguments in ``settings``; torch only (:mod:`.modules` adds Lightning).

    Args:
        data_dir: where the dataset lives or is downloaded to (default ``~/.cache/qsnn_lightning/data``).
        batch_size: samples per batch for every loader.
        num_workers: loader worker processes (workers persist across epochs when > 0).
        val_fraction: share of the training split held out for validation, in ``[0, 1)``.
        seed: seed of the train/val permutation; the same seed gives the same split.
        download: allow ``prepare_data`` to download missing files.
        augment: apply training augmentation (otherwise training uses the evaluation transforms).
        subset: keep only the first ``subset`` samples of each of train, val (in permuted order, so
            a seeded random sample) and test (in file order); for fast tests and dev runs.
        pin_memory: pin loader memory for faster host-to-GPU copies.

    Subclasses set ``name`` (the ``info.py`` key), ``title`` (for messages), ``mean``, ``std``,
    ``crop_padding``, ``setup_hint`` (how to get the files, ending the not-found message) and
    implement the file check, download and loading hooks below.
    """

    name: str
    title: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int
    setup_hint: str

    def __init__(
        self,
        *,
        data_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        download: bool = True,
        augment: bool = True,
        subset: int | None = None,
        pin_memory: bool = False,
    ):
        super().__init__()  # LightningDataModule's, where :mod:`.modules` adds it
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be >= 1 or None, got {subset}")
        self.settings = SimpleNamespace(
            data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, val_fraction=val_fraction, seed=seed,
            download=download, augment=augment, subset=subset, pin_memory=pin_memory,
        )
        info = dataset_info(self.name)
        self.num_classes = info.num_classes
        self.input_shape = info.input_shape
        self.root = Path(data_dir or DEFAULT_DATA_DIR).expanduser()
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # --- hooks for subclasses -------------------------------------------------------------
    def _missing_files(self) -> list[str]:
        """Required files (relative to ``self.root``) that are absent; empty when all are there."""
        raise NotImplementedError

    def _download(self) -> None:
        """Fetch the dataset into ``self.root``."""
        raise NotImplementedError

    def _load_source(self, train: bool) -> Dataset:
        """The training (``train=True``) or test split as ``(PIL image, label)`` pairs."""
        raise NotImplementedError

    # --- files ----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download missing files when ``download`` is true, then check that all are present."""
        download_failure = None
        if self.settings.download and self._missing_files():
            try:
                self._download()
            except (URLError, OSError, RuntimeError) as error:
                download_failure = one_line(error)
        self._require_files(download_failure)

    def _require_files(self, download_failure: str | None = None) -> None:
        missing = self._missing_files()
        if missing:
            failure = f" (download failed: {download_failure})" if download_failure else ""
            raise DatasetNotFoundError(
                f"{self.title} not found: missing {', '.join(missing)} in {self.root}{failure}; {self.setup_hint}"
            )

    # --- datasets -------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build the splits ``stage`` needs from the files on disk (never downloads)."""
        self._require_files()
        if stage in (None, "fit", "validate") and self.train_set is None:
            source = self._load_source(train=True)
            train_indices, val_indices = self._split_indices(len(source))
            self.train_set = self._subset(source, train_indices, augment=self.settings.augment)
            self.val_set = self._subset(source, val_indices, augment=False)
        if stage in (None, "test") and self.test_set is None:
            source = self._load_source(train=False)
            self.test_set = self._subset(source, range(len(source))[: self.settings.subset], augment=False)

    def _subset(self, source: Dataset, indices: Sequence[int], augment: bool) -> Dataset:
        """The samples of ``source`` at ``indices`` through the training (``augment``) or evaluation transform."""
        return TransformedSubset(source, indices, self.train_transform() if augment else self.eval_transform())

    def _split_indices(self, size: int) -> tuple[list[int], list[int]]:
        generator = torch.Generator().manual_seed(self.settings.seed)
        permutation = torch.randperm(size, generator=generator).tolist()
        val_size = round(size * self.settings.val_fraction)
        subset = self.settings.subset
        return permutation[val_size:][:subset], permutation[:val_size][:subset]

    def eval_transform(self) -> Callable:
        """PIL image to normalized tensor."""
        return transforms.Compose([transforms.ToTensor(), transforms.Normalize(self.mean, self.std)])

    def train_transform(self) -> Callable:
        """Random padded crop and horizontal flip, then the evaluation transform (when ``augment``)."""
        if not self.settings.augment:
            return self.eval_transform()
        return transforms.Compose(
            [
                transforms.RandomCrop(self.input_shape[1:], padding=self.crop_padding),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(self.mean, self.std),
            ]
        )

    # --- loaders --------------------------------------------------------------------------
    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested")
        workers = self.settings.num_workers
        return DataLoader(
            dataset,
            batch_size=self.settings.batch_size,
            shuffle=shuffle,
            drop_last=False,
            num_workers=workers,
            pin_memory=self.settings.pin_memory,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Batches of the training part, reshuffled every epoch (``setup`` must have run)."""
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Batches of the validation part held out of the training split, in order."""
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Batches of the test split, in order."""
        return self._loader(self.test_set, shuffle=False)


class FashionMNISTData(StaticImageData):
    """Fashion-MNIST from the original idx files (gzipped or not).

    Looked up in ``data_dir`` (directly, or in torchvision's ``FashionMNIST/raw`` below it); without
    ``data_dir``, in the Debian package directory ``/usr/share/datasets/fashion-mnist`` and then in
    the default data directory. ``prepare_data`` downloads with torchvision when nothing is found.
    """

    name = "fashionmnist"
    title = "Fashion-MNIST"
    mean = (0.2860,)
    std = (0.3530,)
    crop_padding = 2
    setup_hint = (
        "put the idx files there (gzipped or not), install the Debian package dataset-fashion-mnist, "
        "or run once online with download=True"
    )
    split_files = {
        True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }

    def _search_dirs(self) -> list[Path]:
        torchvision_dir = self.root / "FashionMNIST" / "raw"
        if self.settings.data_dir:
            return [self.root, torchvision_dir]
        return [DEBIAN_FASHION_MNIST_DIR, self.root, torchvision_dir]

    @staticmethod
    def _find(directory: Path, stem: str) -> Path | None:
        return next((path for path in (directory / f"{stem}.gz", directory / stem) if path.is_file()), None)

    def _located_dir(self) -> Path | None:
        stems = [stem for pair in self.split_files.values() for stem in pair]
        return next((d for d in self._search_dirs() if all(self._find(d, stem) for stem in stems)), None)

    def _missing_files(self) -> list[str]:
        if self._located_dir() is not None:
            return []
        stems = [stem for pair in self.split_files.values() for stem in pair]
        return [f"{stem}.gz" for stem in stems if self._find(self.root, stem) is None]

    def _download(self) -> None:
        datasets.FashionMNIST(root=self.root, train=True, download=True)

    def _load_source(self, train: bool) -> Dataset:
        directory = self._located_dir()
        image_path, label_path = (self._find(directory, stem) for stem in self.split_files[train])
        images = read_idx(image_path, IDX_IMAGES_MAGIC)
        labels = read_idx(label_path, IDX_LABELS_MAGIC)
        if images.shape[1:] != self.input_shape[1:]:
            raise DatasetCorruptError(f"{image_path} holds {images.shape[1:]} images, expected {self.input_shape[1:]}")
        if len(labels) != len(images) or labels.max(initial=0) >= self.num_classes:
            raise DatasetCorruptError(
                f"{label_path} does not hold one label in 0..{self.num_classes - 1} per image of {image_path}"
            )
        return ImageArrayDataset(images, labels)

    def _subset(self, source: ImageArrayDataset, indices: Sequence[int], augment: bool) -> Dataset:
        """Unaugmented splits a batch at a time from the idx arrays (the evaluation transform's values)."""
        if augment:
            return super()._subset(source, indices, augment)
        return NormalizedArraySubset(source, indices, self.mean, self.std)


class _CIFARData(StaticImageData):
    """CIFAR through torchvision (which verifies the md5 of every file) with the AutoAugment + Cutout recipe."""

    crop_padding = 4
    cutout_size = 16
    torchvision_dataset: type[datasets.CIFAR10]

    def _required_files(self) -> list[tuple[str, str]]:
        """``(path relative to root, md5)`` of every file torchvision reads."""
        dataset = self.torchvision_dataset
        files = dataset.train_list + dataset.test_list + [[dataset.meta["filename"], dataset.meta["md5"]]]
        return [(f"{dataset.base_folder}/{filename}", md5) for filename, md5 in files]

    def _missing_files(self) -> list[str]:
        return [path for path, _ in self._required_files() if not (self.root / path).is_file()]

    def _download(self) -> None:
        self.torchvision_dataset(root=self.root, train=True, download=True)

    def _load_source(self, train: bool) -> Dataset:
        try:
            return self.torchvision_dataset(root=self.root, train=train, download=False)
        except RuntimeError:  # torchvision's checksum check failed
            corrupt = [path for path, md5 in self._required_files() if not check_integrity(self.root / path, md5)]
            raise DatasetCorruptError(
                f"{self.title} files fail their md5 check: {', '.join(corrupt)} in {self.root}; "
                "delete them and run once online with download=True"
            ) from None

    def train_transform(self) -> Callable:
        """RandomCrop(32, padding 4), flip, AutoAugment (CIFAR-10 policy), normalize, Cutout(16)."""
        if not self.settings.augment:
            return self.eval_transform()
        return transforms.Compose(
            [
                transforms.RandomCrop(self.input_shape[1:], padding=self.crop_padding),
                transforms.RandomHorizontalFlip(),
                transforms.AutoAugment(transforms.AutoAugmentPolicy.CIFAR10),
                transforms.ToTensor(),
                transforms.Normalize(self.mean, self.std),
                Cutout(self.cutout_size),
            ]
        )


class CIFAR10Data(_CIFARData):
    """CIFAR-10 from ``<data_dir>/cifar-10-batches-py`` (torchvision's layout)."""

    name = "cifar10"
    title = "CIFAR-10"
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    torchvision_dataset = datasets.CIFAR10
    setup_hint = (
        "extract cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html there, "
        "or run once online with download=True"
    )


class CIFAR100Data(_CIFARData):
    """CIFAR-100 (fine labels) from ``<data_dir>/cifar-100-python`` (torchvision's layout)."""

    name = "cifar100"
    title = "CIFAR-100"
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    torchvision_dataset = datasets.CIFAR100
    setup_hint = (
        "extract cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html there, "
        "or run once online with download=True"
    )


class TinyImageNetData(StaticImageData):
    """TinyImageNet from ``<data_dir>/tiny-imagenet-200`` in the layout of the official zip.

    Train split: ``train/<wnid>/images/*.JPEG``; test split: the official ``val/images`` labelled by
    ``val/val_annotations.txt``. The class index of a wnid is its position in the *sorted* list of
    ``wnids.txt`` (the order ``torchvision.datasets.ImageFolder`` would give the train folders).
    """

    name = "tinyimagenet"
    title = "TinyImageNet"
    mean = (0.4802, 0.4481, 0.3975)
    std = (0.2770, 0.2691, 0.2821)
    crop_padding = 4
    folder = "tiny-imagenet-200"
    setup_hint = f"unzip {TINY_IMAGENET_URL} there, or run once online with download=True"

    def _missing_files(self) -> list[str]:
        required = ("wnids.txt", "train", "val/images", "val/val_annotations.txt")
        return [f"{self.folder}/{path}" for path in required if not (self.root / self.folder / path).exists()]

    def _download(self) -> None:
        download_and_extract_archive(TINY_IMAGENET_URL, download_root=str(self.root), md5=TINY_IMAGENET_MD5)

    def _load_source(self, train: bool) -> Dataset:
        folder = self.root / self.folder
        wnids = sorted(line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip())
        class_index = {wnid: index for index, wnid in enumerate(wnids)}
        samples = self._train_samples(folder, class_index) if train else self._val_samples(folder, class_index)
        return ImageFileDataset(samples)

    @staticmethod
    def _train_samples(folder: Path, class_index: dict[str, int]) -> list[tuple[Path, int]]:
        samples = []
        for wnid, label in class_index.items():
            images = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
            if not images:
                raise DatasetCorruptError(
                    f"{folder / 'train' / wnid / 'images'} holds no .JPEG images; unzip the archive again"
                )
            samples += [(path, label) for path in images]
        return samples

    @staticmethod
    def _val_samples(folder: Path, class_index: dict[str, int]) -> list[tuple[Path, int]]:
        annotations = folder / "val" / "val_annotations.txt"
        samples = []
        for line_number, line in enumerate(annotations.read_text().splitlines(), start=1):
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in class_index:
                raise DatasetCorruptError(
                    f"{annotations} line {line_number} is not 'filename<TAB>wnid<TAB>box' for a known wnid"
                )
            samples.append((folder / "val" / "images" / fields[0], class_index[fields[1]]))
        return samples
