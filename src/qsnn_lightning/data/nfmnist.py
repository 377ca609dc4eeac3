"""N-Fashion-MNIST: Fashion-MNIST turned into event streams by a simulated event camera, so the
whole event path (events -> frames -> cache -> NDA -> model) runs offline.

The simulation follows how N-MNIST was recorded (a sensor making three saccades in front of a
still image) with the simplest model of a DVS pixel; docs/datasets.md gives the parameters:

1. The 28x28 image (intensity ``I = pixel / 255``) lies on a 34x34 sensor at offset ``(dx, dy)``
   (bilinear for fractional offsets). The offset walks the triangle (1, 1) -> (5, 3) -> (1, 5)
   -> (1, 1): three saccades of ``STEPS_PER_SACCADE`` equal steps, ``SACCADE_US`` each.
2. Every pixel keeps a reference log intensity ``L_ref`` (initially that of the first view), with
   ``L = log(I + LOG_OFFSET)``. After each step, a pixel whose ``L - L_ref`` has crossed
   ``n = trunc((L - L_ref) / THRESHOLD)`` thresholds emits ``|n|`` events of polarity
   ``sign(n)`` (ON = 1) and moves ``L_ref`` by ``n * THRESHOLD``.
3. An event of step ``s`` gets the time ``(s + u) * step length`` (µs), ``u`` uniform in [0, 1)
   from a generator seeded with ``SEED`` and the split, so the data is the same on every machine.

Each split is written once, atomically, to ``<data_dir>/NFashionMNIST/v<VERSION>/`` as
``<split>_events.npy`` (all samples' events, a structured array with fields x, y, t, p in
tonic's style, sorted by sample then time), ``<split>_offsets.npy`` (sample ``i`` is
``events[offsets[i]:offsets[i + 1]]``) and ``<split>_labels.npy``.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DatasetCorruptError, one_line
from ..files import atomic_open
from .events import EventData
from .static import FashionMNISTData

VERSION = 1  # bump when anything below changes the events
SENSOR = 34
VERTICES = np.array([(1.0, 1.0), (5.0, 3.0), (1.0, 5.0)])  # image offsets (dx, dy) of the saccade triangle
STEPS_PER_SACCADE = 4
SACCADE_US = 100_000
LOG_OFFSET = 0.1
THRESHOLD = 0.8
SEED = 0
CHUNK = 2000  # images simulated at once
EVENT_DTYPE = np.dtype([("x", np.uint8), ("y", np.uint8), ("t", np.uint32), ("p", np.uint8)])
SPLIT_FILES = ("events", "offsets", "labels")


def saccade_offsets() -> np.ndarray:
    """``[3 * STEPS_PER_SACCADE + 1, 2]`` image offsets: the start, then every step of the triangle."""
    starts, ends = VERTICES, np.roll(VERTICES, -1, axis=0)
    fractions = np.arange(1, STEPS_PER_SACCADE + 1)[:, None] / STEPS_PER_SACCADE
    steps = [start + (end - start) * fractions for start, end in zip(starts, ends)]
    return np.concatenate([VERTICES[:1], *steps])


def view(images: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``[N, 34, 34]`` sensor view of ``[N, 28, 28]`` intensities placed at offset (dx, dy), bilinear."""
    left, top = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - left, dy - top
    side = images.shape[-1]
    canvas = np.zeros((len(images), SENSOR + 1, SENSOR + 1), np.float32)
    for ox, oy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        if weight:
            canvas[:, top + oy: top + oy + side, left + ox: left + ox + side] += weight * images
    return canvas[:, :SENSOR, :SENSOR]


def simulate(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Events of ``[N, 28, 28]`` uint8 images: ``(events sorted by sample then time, counts per sample)``."""
    intensity = images.astype(np.float32) / 255
    offsets = saccade_offsets()
    step_us = SACCADE_US // STEPS_PER_SACCADE
    reference = np.log(view(intensity, *offsets[0]) + LOG_OFFSET)
    samples, xs, ys, times, polarities = [], [], [], [], []
    for step, offset in enumerate(offsets[1:]):
        crossings = np.trunc((np.log(view(intensity, *offset) + LOG_OFFSET) - reference) / THRESHOLD)
        reference += crossings * THRESHOLD
        sample, y, x = np.nonzero(crossings)
        repeats = np.abs(crossings[sample, y, x]).astype(np.int64)
        sample, y, x = np.repeat(sample, repeats), np.repeat(y, repeats), np.repeat(x, repeats)
        samples.append(sample)
        xs.append(x)
        ys.append(y)
        polarities.append(np.repeat(crossings[crossings != 0] > 0, repeats))
        times.append(((step + rng.random(len(sample))) * step_us).astype(np.uint32))
    sample, x, y, t, p = (np.concatenate(parts) for parts in (samples, xs, ys, times, polarities))
    order = np.lexsort((t, sample))
    events = np.empty(len(order), EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x[order], y[order], t[order], p[order]
    return events, np.bincount(sample, minlength=len(images))


def _save_atomically(path: Path, array: np.ndarray) -> None:
    with atomic_open(path) as file:
        np.save(file, array)


def write_split(directory: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Simulate the events of one split and write its three files (labels last: they mark it done)."""
    rng = np.random.default_rng([SEED, split == "train"])
    events, counts = [], []
    for start in tqdm(range(0, len(images), CHUNK), desc=f"N-Fashion-MNIST {split} events -> {directory}",
                      unit="chunk"):
        chunk_events, chunk_counts = simulate(images[start: start + CHUNK], rng)
        events.append(chunk_events)
        counts.append(chunk_counts)
    directory.mkdir(parents=True, exist_ok=True)
    _save_atomically(directory / f"{split}_events.npy", np.concatenate(events))
    _save_atomically(directory / f"{split}_offsets.npy", np.concatenate([[0], np.cumsum(np.concatenate(counts))]))
    _save_atomically(directory / f"{split}_labels.npy", labels.astype(np.int64))


@dataclass
class SimulatedSource:
    """The samples of one written split, read through a memory map."""

    root: Path
    split: str
    names: list[str] = field(init=False)
    labels: list[int] = field(init=False)

    def __post_init__(self):
        self.events, self.offsets, labels = (self._load(kind) for kind in SPLIT_FILES)
        if len(self.offsets) != len(labels) + 1 or self.offsets[-1] != len(self.events):
            raise DatasetCorruptError(
                f"{self.root / self.split}_*.npy do not agree (offsets, labels, events); delete them and they are rewritten"
            )
        self.labels = labels.tolist()
        self.names = [f"{self.split}/{index:05d}" for index in range(len(labels))]

    def _load(self, kind: str) -> np.ndarray:
        path = self.root / f"{self.split}_{kind}.npy"
        try:
            return np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as error:
            raise DatasetCorruptError(
                f"{path} is corrupt or truncated ({one_line(error)[:120]}); delete it and it is rewritten"
            ) from None

    def read(self, index: int) -> np.ndarray:
        """The events of sample ``index``: ``events[offsets[index]:offsets[index + 1]]``, read through the memory map."""
        return np.asarray(self.events[self.offsets[index]: self.offsets[index + 1]])


class NFashionMNISTData(EventData):
    """N-Fashion-MNIST (10 classes, 34x34): events simulated from Fashion-MNIST (found as
    :class:`~.static.FashionMNISTData` finds it, in ``data_dir`` first when it is given) and
    written once below ``data_dir``; then the same frames, cache and NDA as DVS-Gesture."""

    name = "nfashionmnist"
    title = "N-Fashion-MNIST"
    sensor_size = (SENSOR, SENSOR, 2)
    data_version = f"v{VERSION}"
    splits = {True: "train", False: "test"}
    setup_hint = "prepare_data() writes them from Fashion-MNIST"

    def __init__(self, **settings):
        super().__init__(**settings)
        self.events_dir = self.root / "NFashionMNIST" / self.data_version

    def _missing_files(self) -> list[str]:
        wanted = [f"{split}_{kind}.npy" for split in self.splits.values() for kind in SPLIT_FILES]
        return [f"NFashionMNIST/{self.data_version}/{name}" for name in wanted if not (self.events_dir / name).is_file()]

    def prepare_data(self) -> None:
        """Write the event files of missing splits, then cache the frames (no network involved
        unless Fashion-MNIST itself is absent and ``download`` allows fetching it)."""
        if self._missing_files():
            self._write_events()
        super().prepare_data()

    def _write_events(self) -> None:
        """Find Fashion-MNIST (downloading it if allowed and absent) and simulate the missing splits."""
        fashion = FashionMNISTData(data_dir=self.settings.data_dir, download=self.settings.download)
        fashion.prepare_data()
        for train, split in self.splits.items():
            if not (self.events_dir / f"{split}_labels.npy").is_file():
                images = fashion._load_source(train)
                write_split(self.events_dir, split, images.images, images.labels)

    _download = _write_events

    def _event_source(self, train: bool) -> SimulatedSource:
        return SimulatedSource(self.events_dir, self.splits[train])
