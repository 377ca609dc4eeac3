"""Event-camera datasets, with torch alone: DVS-Gesture and CIFAR10-DVS (the Lightning
DataModules around them are in :mod:`.modules`).

Every event dataset class yields ``(frames [B, T, 2, H, W] float32, label int64)`` batches. The
events of a sample are read from their real on-disk layout (by tonic's dataset classes, or for
IBM's original DVS-Gesture archive by :mod:`.aedat` and the archive's label and trial lists), binned
into T frames (:mod:`.frames`), cached on disk under ``<data_dir>/frames/``, and normalized
per sample to ``[0, 1]`` (divided by the sample's largest frame value). Training frames get NDA
(:mod:`.augment`) when ``augment`` is true; validation and test frames never do.

The shared logic (file checks, downloads in ``prepare_data`` only, the seeded train/validation
split, ``subset``, the loaders) is :class:`~.static.StaticImageData`'s; ``prepare_data``
also builds the frame cache of every sample the loaders will use, with a progress bar.
"""

import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import tonic
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..errors import DatasetCorruptError, DatasetNotFoundError
from .aedat import corrupt as aedat_corrupt
from .aedat import read_polarity_events
from .augment import neuromorphic_augmentation
from .frames import EventSource, FrameCache, FrameSettings
from .info import dataset_info
from .static import StaticImageData

ORIGINAL_ARCHIVE = "DvsGesture.tar.gz"
ORIGINAL_URL = "https://research.ibm.com/interactive/dvsgesture/"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")  # a launcher's, read as Lightning reads them


def is_rank_zero() -> bool:
    """Whether this is the first process of its run: rank 0 of torch.distributed's group where one
    is up, else by the first of ``RANK_VARIABLES`` that is set (a process started alone is rank 0)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(next((os.environ[name] for name in RANK_VARIABLES if name in os.environ), 0)) == 0


def rank_zero_info(message: str) -> None:
    """Print ``message`` to stderr in the first process of a run only, as Lightning's
    ``rank_zero_info`` shows it in a run's log, without Lightning."""
    if is_rank_zero():
        print(message, file=sys.stderr, flush=True)


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
        """The events of sample ``index`` (in name order), as tonic's dataset reads them."""
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


class EventData(StaticImageData):
    """Event frames with the settings of :class:`~.frames.FrameSettings` and NDA.

    Args (besides those of :class:`~.static.StaticImageData`):
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
        vars(self.settings).update(timesteps=timesteps, split_by=split_by, resize=resize, resize_mode=resize_mode,
                                   roll=roll, rotate=rotate, shear=shear, flip=flip)
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
        """The training (``train=True``) or test split's events: ``_event_source(train)``, made once and kept."""
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
                used = range(len(source.names))[: self.settings.subset]
            self.cache.build(source, used, f"{self.title} {split}")

    def _load_source(self, train: bool) -> Dataset:
        return CachedFrames(self.cache, self.source(train))

    def eval_transform(self):
        """Per-sample normalization to [0, 1] (:func:`normalize_frames`), nothing else."""
        return normalize_frames

    def train_transform(self):
        """Normalization, then NDA (one of roll / rotation / shear, and a flip) when ``augment``."""
        if not self.settings.augment:
            return self.eval_transform()
        nda = neuromorphic_augmentation(
            self.settings.roll, self.settings.rotate, self.settings.shear, self.settings.flip
        )
        return v2.Compose([normalize_frames, nda])


class DVSGesture(tonic.datasets.DVSGesture):
    """tonic's DVS-Gesture reader over files :class:`DVSGestureData` has found (tonic's own check would
    also want the downloaded archives and at least 100 files). Same class name, same folder."""

    def _check_exists(self) -> bool:
        return True


class CIFAR10DVS(tonic.datasets.CIFAR10DVS):
    """tonic's CIFAR10-DVS reader over files :class:`CIFAR10DVSData` has found (tonic's own check would
    also want the downloaded zip and at least 1000 files). Same class name, same folder."""

    def _check_exists(self) -> bool:
        return True


class IBMGestureSource:
    """The gestures of IBM's original DVS-Gesture archive in the files one trials list names: one
    sample per row of each file's ``<file>_labels.csv``, the events with ``start <= t < end``.

    ``folder`` is ``<data_dir>/DvsGesture``; a sample is named ``userNN_<lighting>/<row>`` (the
    0-based row of the labels file) for the frame cache. The files are sorted by name and the
    samples of a file follow its rows, so the samples of one file are read in a row: the events of
    the last file read are kept (not pickled into loader workers).
    """

    def __init__(self, folder: Path, trials: str):
        self.root = folder
        self.names: list[str] = []
        self.labels: list[int] = []
        self.cuts: list[tuple[str, int, int]] = []  # (.aedat file name, start, end) per sample
        for file in sorted(read_trials(folder / trials)):
            stem = file.removesuffix(".aedat")
            for row, (label, start, end) in enumerate(read_gesture_labels(folder / f"{stem}_labels.csv")):
                self.names.append(f"{stem}/{row}")
                self.labels.append(label)
                self.cuts.append((file, start, end))
        self._last: tuple[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_last": None}

    def events(self, file: str) -> np.ndarray:
        """All polarity events of one .aedat file, sorted by time (stable)."""
        if self._last is None or self._last[0] != file:
            events = read_polarity_events(self.root / file)
            width, height, _ = tonic.datasets.DVSGesture.sensor_size
            if len(events) and (events["x"].max() >= width or events["y"].max() >= height):
                raise aedat_corrupt(self.root / file, f"event coordinates leave the {width}x{height} sensor")
            if len(events) and (np.diff(events["t"]) < 0).any():
                events = events[np.argsort(events["t"], kind="stable")]
            self._last = (file, events)
        return self._last[1]

    def read(self, index: int) -> np.ndarray:
        """The events of sample ``index``: those of its .aedat file with ``start <= t < end``."""
        file, start, end = self.cuts[index]
        events = self.events(file)
        first, stop = np.searchsorted(events["t"], [start, end], side="left")
        return events[first:stop]


def read_trials(path: Path) -> list[str]:
    """The .aedat file names of a ``trials_to_train.txt`` / ``trials_to_test.txt`` (blank lines and
    surrounding whitespace ignored)."""
    names = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    for number, name in enumerate(names, start=1):
        if not name.endswith(".aedat") or "/" in name or "\\" in name:
            raise DatasetCorruptError(
                f"{path} entry {number} ({name[:60]!r}) is not the name of an .aedat file in its folder; "
                "extract DvsGesture.tar.gz again"
            )
    if not names:
        raise DatasetCorruptError(f"{path} names no .aedat files; extract DvsGesture.tar.gz again")
    return names


GESTURE_LABELS_HEADER = "class,startTime_usec,endTime_usec"


def read_gesture_labels(path: Path) -> list[tuple[int, int, int]]:
    """``(label 0..10, start µs, end µs)`` per row of a ``userNN_<lighting>_labels.csv`` (header
    ``class,startTime_usec,endTime_usec``, classes 1..11, ``start < end``)."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} is missing (the gestures of its .aedat file); extract DvsGesture.tar.gz again")
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]

    def malformed(detail: str) -> DatasetCorruptError:
        return DatasetCorruptError(f"{path} is malformed: {detail}; extract DvsGesture.tar.gz again")

    if not lines or lines[0].replace(" ", "") != GESTURE_LABELS_HEADER:
        raise malformed(f"its first line is not {GESTURE_LABELS_HEADER}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            gesture, start, end = (int(field) for field in line.split(","))
        except ValueError:
            raise malformed(f"line {number} is not three integers class,start,end") from None
        if not 1 <= gesture <= 11 or start >= end:
            raise malformed(f"line {number} needs a class in 1..11 and start < end, got {line[:60]!r}")
        rows.append((gesture - 1, start, end))
    if not rows:
        raise malformed("it lists no gestures")
    return rows


class DVSGestureData(EventData):
    """DVS-Gesture (11 classes, 128x128) from either of two layouts in ``data_dir``:

    * IBM's original archive (preferred, found by ``DvsGesture/trials_to_train.txt``):
      ``DvsGesture/userNN_<lighting>.aedat`` (AEDAT 3.1, :mod:`.aedat`) with
      ``userNN_<lighting>_labels.csv``, split by ``trials_to_train.txt`` / ``trials_to_test.txt``:
      1,176 train / 288 test gestures, the paper's split.
    * tonic's preprocessed copy: ``DVSGesture/ibmGestureTrain`` and ``ibmGestureTest``, each holding
      ``user<NN>_<lighting>/<label>.npy`` event arrays (columns x, y, p, t in ms): 1,077 / 264.

    The test split is the dataset's own (users 24-29) in both. Their frames are cached apart
    (``data_version``), and the run's log names the layout used and its sample counts.
    """

    name = "dvsgesture"
    title = "DVS-Gesture"
    sensor_size = tonic.datasets.DVSGesture.sensor_size
    folders = {True: "ibmGestureTrain", False: "ibmGestureTest"}
    original_folder = "DvsGesture"
    trials = {True: "trials_to_train.txt", False: "trials_to_test.txt"}
    original_version = "ibm-aedat3.1"  # the cache key of frames from the original archive
    original_hint = (
        f"extract IBM's {ORIGINAL_ARCHIVE} ({ORIGINAL_URL}) into <data_dir>/ so that <data_dir>/DvsGesture/ "
        "holds trials_to_train.txt, trials_to_test.txt and each userNN_<lighting>.aedat with its _labels.csv"
    )
    tonic_hint = (
        f"download {tonic.datasets.DVSGesture.train_filename} ({tonic.datasets.DVSGesture.train_url}) and "
        f"{tonic.datasets.DVSGesture.test_filename} ({tonic.datasets.DVSGesture.test_url}) and extract both "
        "into <data_dir>/DVSGesture/, or run once online with download=True"
    )

    @cached_property
    def original(self) -> bool:
        """Whether ``data_dir`` holds the original archive (decided once, when the object is made)."""
        return (self.root / self.original_folder / self.trials[True]).is_file()

    @property
    def data_version(self) -> str:
        """The frame cache's data version: ``original_version`` for the original archive, ``""`` for tonic's copy."""
        return self.original_version if self.original else ""

    @property
    def setup_hint(self) -> str:
        """How to get the files (the end of the not-found message): the original archive's steps, or tonic's copy's
        followed by the original's (the paper's split)."""
        if self.original:
            return self.original_hint
        return f"{self.tonic_hint}; or, for the paper's 1,176 / 288 split, {self.original_hint}"

    def _missing_files(self) -> list[str]:
        if self.original:
            return self._missing_original_files()
        folders = [Path("DVSGesture") / folder for folder in self.folders.values()]
        return [f"{folder}/user*_*/*.npy" for folder in folders if not any((self.root / folder).glob("user*_*/*.npy"))]

    def _missing_original_files(self, shown: int = 3) -> list[str]:
        """The trials lists, and the .aedat and labels files they name, that are absent (the first
        ``shown`` of them, then a count)."""
        folder = self.root / self.original_folder
        missing = []
        for trials in self.trials.values():
            if not (folder / trials).is_file():
                missing.append(f"{self.original_folder}/{trials}")
                continue
            for file in read_trials(folder / trials):
                for name in (file, file.removesuffix(".aedat") + "_labels.csv"):
                    if not (folder / name).is_file():
                        missing.append(f"{self.original_folder}/{name} (named by {trials})")
        if len(missing) > shown:
            missing = missing[:shown] + [f"{len(missing) - shown} more"]
        return missing

    def _download(self) -> None:
        if self.original:  # IBM's archive is not downloaded automatically, nor replaced by tonic's copy
            return
        for train in (True, False):
            tonic.datasets.DVSGesture(save_to=str(self.root), train=train)

    @cached_property
    def _splits(self) -> dict[bool, EventSource]:
        """Both splits' samples, read once, and the one line of the log that says what was used."""
        if self.original:
            splits = {train: IBMGestureSource(self.root / self.original_folder, self.trials[train]) for train in (True, False)}
        else:
            datasets = {train: DVSGesture(save_to=str(self.root), train=train) for train in (True, False)}
            splits = {train: TonicSource(data, Path(data.location_on_system)) for train, data in datasets.items()}
        rank_zero_info(self.split_summary(len(splits[True].names), len(splits[False].names)))
        return splits

    def split_summary(self, train: int, test: int) -> str:
        """The log line naming the layout in use and its sample counts."""
        counts = f"{train} train / {test} test samples"
        if self.original:
            return f"dvsgesture: original archive split (DvsGesture/*.aedat, trials_to_train/test.txt): {counts}"
        return (
            f"dvsgesture: tonic's preprocessed copy (DVSGesture/ibmGestureTrain, ibmGestureTest): {counts} "
            "(the full copy has 1077 / 264, the original archive 1176 / 288: the paper's split needs "
            "DvsGesture/trials_to_train.txt in data_dir)"
        )

    def _event_source(self, train: bool) -> EventSource:
        return self._splits[train]


class CIFAR10DVSData(EventData):
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
