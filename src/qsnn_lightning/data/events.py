"""Lightning DataModules for event-camera datasets: DVS-Gesture and CIFAR10-DVS through tonic.

Every event DataModule yields ``(frames [B, T, 2, H, W] float32, label int64)`` batches. The
events of a sample are read by tonic's dataset classes from their real on-disk layout, binned
into T frames (:mod:`.frames`), cached on disk under ``<data_dir>/frames/``, and normalized
per sample to ``[0, 1]`` (divided by the sample's largest frame value). Training frames get NDA
(:mod:`.augment`) when ``augment`` is true; validation and test frames never do.

The shared logic (file checks, downloads in ``prepare_data`` only, the seeded train/validation
split, ``subset``, the loaders) is :class:`~.static.StaticImageDataModule`'s; ``prepare_data``
also builds the frame cache of every sample the loaders will use, with a progress bar.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tonic
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .augment import neuromorphic_augmentation
from .frames import EventSource, FrameCache, FrameSettings
from .info import dataset_info
from .static import StaticImageDataModule


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """Frames divided by their largest value (all-zero frames stay zero), so inputs lie in [0, 1]."""
    peak = frames.max()
    return frames / peak if peak > 0 else frames


@dataclass
class TonicSource:
    """The samples ``indices`` of a tonic dataset, named by their path below ``root`` and sorted by
    that name (tonic lists files in directory order, which differs between file systems)."""

    dataset: tonic.Dataset
    root: Path
    indices: list[int] | None = None
    names: list[str] = field(init=False)
    labels: list[int] = field(init=False)

    def __post_init__(self):
        indices = range(len(self.dataset.data)) if self.indices is None else self.indices
        relative = {index: Path(self.dataset.data[index]).relative_to(self.root).as_posix() for index in indices}
        self.indices = sorted(indices, key=relative.__getitem__)
        self.names = [relative[index] for index in self.indices]
        self.labels = [int(self.dataset.targets[index]) for index in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, index: int) -> np.ndarray:
        events, _ = self.dataset[self.indices[index]]
        return events


class CachedFrames(Dataset):
    """``(frames [T, 2, H, W] float32 tensor, label)`` of the samples of ``source`` from ``cache``."""

    def __init__(self, cache: FrameCache, source: EventSource):
        self.cache, self.source = cache, source

    def __len__(self) -> int:
        return len(self.source.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.cache.load(self.source, index)), self.source.labels[index]


class EventDataModule(StaticImageDataModule):
    """Event frames with the settings of :class:`~.frames.FrameSettings` and NDA.

    Args (besides those of :class:`~.static.StaticImageDataModule`):
        timesteps: frames per sample (the model's T).
        split_by: ``"number"`` (equal event counts per frame) or ``"time"`` (equal time bins).
        resize: side of the square frames; ``None`` takes the dataset's size in ``info.py``
            (48 for CIFAR10-DVS as in TET, the sensor's 128 for DVS-Gesture).
        resize_mode: ``"bilinear"`` (interpolated counts) or ``"area"`` (every event counted in
            its block), see :mod:`.frames`.
        roll, rotate, shear: NDA's largest roll (pixels), rotation and shear (degrees); 0 leaves
            that transform out.
        flip: random horizontal flip of training frames.

    Subclasses set ``name``, ``title``, ``sensor_size`` (tonic's ``(W, H, P)``), ``setup_hint``,
    ``_missing_files``, ``_download`` and ``_event_source``.
    """

    sensor_size: tuple[int, int, int]
    data_version = ""  # names the simulator version of generated events

    def __init__(
        self,
        *,
        timesteps: int = 10,
        split_by: str = "number",
        resize: int | None = None,
        resize_mode: str = "bilinear",
        roll: int = 5,
        rotate: float = 30.0,
        shear: float = 30.0,
        flip: bool = True,
        **settings,
    ):
        super().__init__(**settings)
        side = resize or dataset_info(self.name).input_shape[-1]
        width, height, _ = self.sensor_size
        self.frame_settings = FrameSettings(
            dataset=self.name, timesteps=timesteps, split_by=split_by, sensor_size=tuple(self.sensor_size),
            resize=None if (side, side) == (height, width) else side, data_version=self.data_version,
            resize_mode=resize_mode,
        )
        self.input_shape = self.frame_settings.frame_shape[1:]
        self.cache = FrameCache(self.root / "frames", self.frame_settings)
        self._sources: dict[bool, EventSource] = {}

    # --- hooks for subclasses -------------------------------------------------------------
    def _event_source(self, train: bool) -> EventSource:
        """The training (``train=True``) or test split's events."""
        raise NotImplementedError

    # --- frames ---------------------------------------------------------------------------
    def source(self, train: bool) -> EventSource:
        if train not in self._sources:
            self._sources[train] = self._event_source(train)
        return self._sources[train]

    def prepare_data(self) -> None:
        """Find (or download) the files, then cache the frames of every sample the loaders will use."""
        super().prepare_data()
        for train, split in ((True, "train"), (False, "test")):
            source = self.source(train)
            if train:
                train_indices, val_indices = self._split_indices(len(source.names))
                used = sorted(train_indices + val_indices)
            else:
                used = range(len(source.names))[: self.hparams.subset]
            self.cache.build(source, used, f"{self.title} {split}")

    def _load_source(self, train: bool) -> Dataset:
        return CachedFrames(self.cache, self.source(train))

    def eval_transform(self):
        return normalize_frames

    def train_transform(self):
        """Normalization, then NDA (one of roll / rotation / shear, and a flip) when ``augment``."""
        if not self.hparams.augment:
            return self.eval_transform()
        nda = neuromorphic_augmentation(
            self.hparams.roll, self.hparams.rotate, self.hparams.shear, self.hparams.flip
        )
        return v2.Compose([normalize_frames, nda])


class DVSGesture(tonic.datasets.DVSGesture):
    """tonic's DVS-Gesture reader over files the DataModule has found (tonic's own check would
    also want the downloaded archives and at least 100 files). Same class name, same folder."""

    def _check_exists(self) -> bool:
        return True


class CIFAR10DVS(tonic.datasets.CIFAR10DVS):
    """tonic's CIFAR10-DVS reader over files the DataModule has found (tonic's own check would
    also want the downloaded zip and at least 1000 files). Same class name, same folder."""

    def _check_exists(self) -> bool:
        return True


class DVSGestureDataModule(EventDataModule):
    """DVS-Gesture (11 classes, 128x128) in tonic's layout: ``<data_dir>/DVSGesture/ibmGestureTrain``
    and ``ibmGestureTest``, each holding ``user<NN>_<lighting>/<label>.npy`` event arrays
    (columns x, y, p, t in ms). The test split is the dataset's own (users 24-29)."""

    name = "dvsgesture"
    title = "DVS-Gesture"
    sensor_size = tonic.datasets.DVSGesture.sensor_size
    folders = {True: "ibmGestureTrain", False: "ibmGestureTest"}
    setup_hint = (
        f"download {tonic.datasets.DVSGesture.train_filename} ({tonic.datasets.DVSGesture.train_url}) and "
        f"{tonic.datasets.DVSGesture.test_filename} ({tonic.datasets.DVSGesture.test_url}) and extract both "
        "into <data_dir>/DVSGesture/, or run once online with download=True"
    )

    def _missing_files(self) -> list[str]:
        folders = [Path("DVSGesture") / folder for folder in self.folders.values()]
        return [f"{folder}/user*_*/*.npy" for folder in folders if not any((self.root / folder).glob("user*_*/*.npy"))]

    def _download(self) -> None:
        for train in (True, False):
            tonic.datasets.DVSGesture(save_to=str(self.root), train=train)

    def _event_source(self, train: bool) -> EventSource:
        dataset = DVSGesture(save_to=str(self.root), train=train)
        return TonicSource(dataset, Path(dataset.location_on_system))


class CIFAR10DVSDataModule(EventDataModule):
    """CIFAR10-DVS (10 classes, 128x128 resized to 48x48) in tonic's layout:
    ``<data_dir>/CIFAR10DVS/<class>/*.aedat4``. The dataset has no test split; the first 90% of
    each class's files (sorted by name) train and the last 10% test, 900/100 per class."""

    name = "dvscifar10"
    title = "CIFAR10-DVS"
    sensor_size = tonic.datasets.CIFAR10DVS.sensor_size
    train_share = 0.9
    setup_hint = (
        f"download {tonic.datasets.CIFAR10DVS.filename} ({tonic.datasets.CIFAR10DVS.url}), unzip it and the ten "
        "class zips inside into <data_dir>/CIFAR10DVS/<class>/, or run once online with download=True"
    )

    def _missing_files(self) -> list[str]:
        folders = [Path("CIFAR10DVS") / name for name in tonic.datasets.CIFAR10DVS.classes]
        return [f"{folder}/*.aedat4" for folder in folders if not any((self.root / folder).glob("*.aedat4"))]

    def _download(self) -> None:
        tonic.datasets.CIFAR10DVS(save_to=str(self.root))

    def _event_source(self, train: bool) -> EventSource:
        dataset = CIFAR10DVS(save_to=str(self.root))
        everything = TonicSource(dataset, Path(dataset.location_on_system))
        selected = []
        for label in sorted(set(everything.labels)):
            members = [i for i, sample_label in enumerate(everything.labels) if sample_label == label]
            cut = round(len(members) * self.train_share)
            selected += members[:cut] if train else members[cut:]
        return TonicSource(dataset, everything.root, [everything.indices[i] for i in selected])
