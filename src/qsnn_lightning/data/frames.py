"""Event streams to T frames, and the on-disk cache of those frames.

An event stream is a tonic-style structured array with fields ``x``, ``y``, ``t`` and ``p``
(sorted by ``t``). :func:`events_to_frames` accumulates it into T frames of event counts
``[T, 2, H, W]`` (channel 0: OFF events, channel 1: ON events), assigning *every* event to exactly
one frame, so the frames of a sample sum to its event count per polarity. tonic's ``ToFrame``
is not used for this because its ``n_event_bins`` drops the last ``N mod T`` events and its
``n_time_bins`` drops the events after ``T * floor(duration / T)``.

Two splits into T frames (``split_by``):

* ``"number"``: equal event counts. Event ``i`` of ``N`` goes to frame ``floor(i * T / N)``, so the
  frame sizes differ by at most one (SpikingJelly's ``split_by='number'``).
* ``"time"``: equal time bins. Event at time ``t`` goes to frame
  ``floor((t - t_first) * T / (t_last - t_first + 1))``.

Two ways to resize the frames to ``R x R`` (``resize_mode``):

* ``"bilinear"``: the count frames are interpolated bilinearly with ``align_corners=True`` (as TET
  resizes CIFAR10-DVS to 48x48). It samples the frame at R points per axis, so a large reduction
  (128 -> 32) drops most events.
* ``"area"``: every event is counted once, in output pixel ``(floor(x * R / W), floor(y * R / H))``:
  the frame is the *sum* of the counts in each block, so the frames still sum to the event count
  per polarity. When R divides the sensor's side (128 -> 32: 4x4 blocks) this is
  ``F.interpolate(mode="area")`` times the block's pixel count; otherwise the blocks differ by
  one pixel in size. It is meant for shrinking: enlarging leaves rows and columns without events.

The cache (:class:`FrameCache`) keeps one compressed ``.npz`` per sample in a folder named by a
hash of every setting that changes the frames (:meth:`FrameSettings.key`), so a changed T, split,
resize, resize mode or data version never reads stale frames. Each file is written to a temporary
name and renamed, so an interrupted build keeps every finished sample and resumes with the rest.
"""

import hashlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import DatasetCorruptError, one_line
from ..files import atomic_open

SPLITS = ("number", "time")
RESIZE_MODES = ("bilinear", "area")  # the first is the default
FRAME_FORMAT = 1  # bump when the binning or the cached file format changes


@dataclass(frozen=True)
class FrameSettings:
    """Everything that decides the cached frames of a sample.

    ``sensor_size`` is tonic's ``(width, height, polarities)``; ``resize`` is the side of the
    square output frames or ``None`` to keep the sensor size, ``resize_mode`` how they are
    resized (module docstring); ``data_version`` names the version of generated event data, or
    the copy of a recorded dataset when it has several (``""`` for tonic's copy).
    """

    dataset: str
    timesteps: int
    split_by: str
    sensor_size: tuple[int, int, int]
    resize: int | None = None
    data_version: str = ""
    resize_mode: str = RESIZE_MODES[0]

    def __post_init__(self):
        if self.timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {self.timesteps}")
        if self.split_by not in SPLITS:
            raise ValueError(f"split_by must be one of {', '.join(SPLITS)}, got {self.split_by!r}")
        if self.resize is not None and self.resize < 1:
            raise ValueError(f"resize must be >= 1 or None, got {self.resize}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {self.resize_mode!r}")

    @property
    def resizes(self) -> bool:
        """Whether the frames are resized: ``resize`` is set and differs from the sensor's size."""
        width, height, _ = self.sensor_size
        return self.resize is not None and (height, width) != (self.resize, self.resize)

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """``(T, 2, H, W)`` of the frames these settings produce."""
        width, height, _ = self.sensor_size
        if self.resize is not None:
            height = width = self.resize
        return (self.timesteps, 2, height, width)

    def key(self) -> str:
        """A folder name unique to these settings: ``<dataset>-T<T>-<split>-<hash>``.

        ``resize_mode`` enters the hash only when it is not the default and the frames are
        resized, so the folders made before it existed keep their names.
        """
        settings = asdict(self)
        if not self.resizes or self.resize_mode == RESIZE_MODES[0]:
            del settings["resize_mode"]
        described = json.dumps({**settings, "format": FRAME_FORMAT}, sort_keys=True)
        digest = hashlib.sha1(described.encode()).hexdigest()[:12]
        return f"{self.dataset}-T{self.timesteps}-{self.split_by}-{digest}"


def frame_indices(events: np.ndarray, timesteps: int, split_by: str) -> np.ndarray:
    """The frame (``0 .. T-1``) of every event; see the module docstring for the two rules."""
    count = len(events)
    if split_by == "number":
        return np.arange(count, dtype=np.int64) * timesteps // max(count, 1)
    times = events["t"].astype(np.int64)
    if count == 0:
        return times
    elapsed = times - times[0]
    return elapsed * timesteps // (elapsed[-1] + 1)


def events_to_frames(events: np.ndarray, settings: FrameSettings) -> np.ndarray:
    """Event counts ``[T, 2, H, W]`` (float32), resized when ``settings.resize`` is set.

    Unless resized bilinearly, ``frames[:, 1].sum()`` is the number of ON events and
    ``frames[:, 0].sum()`` the number of OFF events.
    """
    width, height, _ = settings.sensor_size
    steps = settings.timesteps
    frame = frame_indices(events, steps, settings.split_by)
    polarity = events["p"].astype(np.int64) > 0
    x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
    if len(events) and (x.min() < 0 or y.min() < 0 or x.max() >= width or y.max() >= height):
        raise ValueError(f"event coordinates leave the {width}x{height} sensor")
    if settings.resizes and settings.resize_mode == "area":
        x, y = x * settings.resize // width, y * settings.resize // height
        height = width = settings.resize
    flat = ((frame * 2 + polarity) * height + y) * width + x
    counts = np.bincount(flat, minlength=steps * 2 * height * width).astype(np.float32)
    frames = counts.reshape(steps, 2, height, width)
    if settings.resizes and settings.resize_mode == "bilinear":
        resized = F.interpolate(torch.from_numpy(frames), size=(settings.resize,) * 2, mode="bilinear",
                                align_corners=True)
        frames = resized.numpy()
    return frames


class EventSource(Protocol):
    """Event samples by index: a name (a relative path, unique within the dataset) for the cache
    file and the messages, a label, and the events themselves."""

    root: Path
    names: Sequence[str]
    labels: Sequence[int]

    def read(self, index: int) -> np.ndarray:
        """The events of sample ``index``: a structured array with fields x, y, p, t, sorted by t."""


class FrameCache:
    """Frames of the samples of one or more :class:`EventSource` under ``root/<settings.key()>/``.

    Raises :class:`DatasetCorruptError` naming the event file that cannot be read, or the cache
    file that cannot be loaded; all other cached samples stay.
    """

    def __init__(self, root: Path, settings: FrameSettings):
        self.settings = settings
        self.directory = Path(root) / settings.key()

    def path(self, name: str) -> Path:
        """The cache file of the sample named ``name``: ``<directory>/<name>.npz``."""
        return self.directory / f"{name}.npz"

    def intact(self, path: Path) -> bool:
        """Whether a cache file is there and whole (its zip's CRCs checked), so that a damaged one
        is found when the data is prepared rather than mid-training."""
        try:
            with zipfile.ZipFile(path) as archive:
                return archive.namelist() == ["frames.npy"] and archive.testzip() is None
        except (OSError, EOFError, ValueError, zipfile.BadZipFile):
            return False

    def build(self, source: EventSource, indices: Sequence[int], description: str) -> None:
        """Convert the samples at ``indices`` that are not cached yet, or whose cache file is
        damaged (rebuilt from its events), with a progress bar.

        A sample whose events cannot be read is skipped until the others are done; then the first
        such file is reported (with the number of further ones) and the run stops.
        """
        missing = [index for index in indices if not self.intact(self.path(source.names[index]))]
        if not missing:
            return
        self._write_settings()
        failures = []
        for index in tqdm(missing, desc=f"{description} frames -> {self.directory}", unit="sample"):
            try:
                self.convert(source, index)
            except DatasetCorruptError as error:
                failures.append(error)
        if failures:
            more = f" ({len(failures) - 1} more unreadable event files)" if len(failures) > 1 else ""
            raise DatasetCorruptError(f"{failures[0]}{more}")

    def _write_settings(self) -> None:
        """A human-readable record of what the folder's frames were made with."""
        self.directory.mkdir(parents=True, exist_ok=True)
        record = self.directory / "settings.json"
        if not record.is_file():
            record.write_text(json.dumps({**asdict(self.settings), "format": FRAME_FORMAT}, indent=2) + "\n")

    def convert(self, source: EventSource, index: int) -> np.ndarray:
        """Read, bin and cache one sample (atomically: a temporary file renamed into place)."""
        name = source.names[index]
        try:
            frames = events_to_frames(source.read(index), self.settings)
        except (ImportError, DatasetCorruptError):
            raise  # a missing reader package is not a damaged file; a reader's own message names the file and the fix
        except Exception as error:  # the readers raise anything from ValueError to a bare Exception
            raise DatasetCorruptError(
                f"event file {source.root / name} is corrupt or truncated ({one_line(error)[:160]}); "
                "delete it and fetch it again"
            ) from None
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(target) as file:
            np.savez_compressed(file, frames=frames)
        return frames

    def load(self, source: EventSource, index: int) -> np.ndarray:
        """The cached frames of sample ``index``, converted first when they are not cached."""
        path = self.path(source.names[index])
        if not path.is_file():
            return self.convert(source, index)
        try:
            with np.load(path) as archive:
                return archive["frames"]
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
            raise DatasetCorruptError(
                f"cached frames {path} cannot be read ({one_line(error)[:120]}); delete the file and it is rebuilt"
            ) from None
