"""Writers of tiny datasets in each dataset's real on-disk format, shared by the tests."""

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = True) -> None:
    """An idx file: big-endian magic number, one big-endian uint32 per dimension, then the uint8 data."""
    header = magic.to_bytes(4, "big") + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def fmnist_pixels(count: int, offset: int) -> np.ndarray:
    """Images whose pixel (r, c) of image i is (offset + 7 i + r + 3 c) mod 256: each image is distinct."""
    i, r, c = np.meshgrid(np.arange(count), np.arange(28), np.arange(28), indexing="ij")
    return ((offset + 7 * i + r + 3 * c) % 256).astype(np.uint8)


def fmnist_labels(count: int, offset: int) -> np.ndarray:
    return ((np.arange(count) + offset) % 10).astype(np.uint8)


def write_fashion_mnist(directory: Path, train: int = 20, test: int = 10, compress: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for prefix, count, offset in (("train", train, 0), ("t10k", test, 100)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", fmnist_pixels(count, offset), 2051, compress)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", fmnist_labels(count, offset), 2049, compress)
    return directory


def cifar_images(count: int, offset: int) -> np.ndarray:
    """Rows of 3072 bytes (R plane, G plane, B plane), each image a distinct constant-per-plane colour."""
    colors = (offset + np.arange(count)[:, None] * 11 + np.array([0, 80, 160])) % 256
    return np.repeat(colors, 1024, axis=1).astype(np.uint8)


def pickle_to(path: Path, content: dict) -> None:
    # The originals are Python 2 pickles whose str keys load as str under encoding="latin1";
    # Python 3 str keys load the same way.
    with open(path, "wb") as file:
        pickle.dump(content, file)


def write_cifar10(root: Path, per_batch: int = 4, test: int = 6) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for batch in range(1, 6):
        offset = batch * per_batch
        labels = [(offset + i) % 10 for i in range(per_batch)]
        pickle_to(folder / f"data_batch_{batch}", {"data": cifar_images(per_batch, offset), "labels": labels})
    pickle_to(folder / "test_batch", {"data": cifar_images(test, 200), "labels": [i % 10 for i in range(test)]})
    pickle_to(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072})


def write_cifar100(root: Path, train: int = 20, test: int = 6) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, count, offset in (("train", train, 0), ("test", test, 200)):
        fine = [(offset + 7 * i) % 100 for i in range(count)]
        content = {"data": cifar_images(count, offset), "fine_labels": fine, "coarse_labels": [f // 5 for f in fine]}
        pickle_to(folder / name, content)
    meta = {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}
    pickle_to(folder / "meta", meta)


TINY_WNIDS = ["n02000002", "n01000001", "n03000003"]  # wnids.txt order; class index follows sorted order
TINY_VAL = [("val_0.JPEG", "n03000003"), ("val_1.JPEG", "n01000001"), ("val_2.JPEG", "n02000002"),
            ("val_3.JPEG", "n01000001"), ("val_4.JPEG", "n03000003")]


def write_tiny_imagenet(root: Path, per_class: int = 4) -> Path:
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(f"{wnid}\n" for wnid in TINY_WNIDS))
    for index, wnid in enumerate(TINY_WNIDS):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for k in range(per_class):
            mode = "L" if k == 0 else "RGB"  # the real set holds some greyscale JPEGs
            Image.new(mode, (64, 64), 40 * index + k if mode == "L" else (40 * index, k, 9)).save(
                images / f"{wnid}_{k}.JPEG"
            )
    lines = []
    for filename, wnid in TINY_VAL:
        Image.new("RGB", (64, 64), (10, 20, 30)).save(folder / "val" / "images" / filename)
        lines.append(f"{filename}\t{wnid}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    return folder


GESTURE_FOLDERS = {"ibmGestureTrain": ("user01_fluorescent", "user01_led", "user02_natural"),
                   "ibmGestureTest": ("user24_fluorescent_led",)}


def gesture_events(count: int, seed: int) -> np.ndarray:
    """``[count, 4]`` int64 rows (x, y, p, t in ms) as in tonic's DVS-Gesture files, t non-decreasing."""
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 128, count), rng.integers(0, 128, count)
    polarity = rng.integers(0, 2, count)
    t = np.sort(rng.integers(0, 1500, count))
    return np.stack([x, y, polarity, t], axis=1).astype(np.int64)


def write_dvs_gesture(root: Path, labels: tuple[int, ...] = (0, 1, 2)) -> dict[str, np.ndarray]:
    """tonic's DVS-Gesture layout: ``DVSGesture/<split folder>/user<NN>_<lighting>/<label>.npy``.
    Returns the written event arrays by path relative to ``root/DVSGesture``."""
    written = {}
    for split, folders in GESTURE_FOLDERS.items():
        for folder in folders:
            (root / "DVSGesture" / split / folder).mkdir(parents=True)
            for label in labels:
                name = f"{split}/{folder}/{label}.npy"
                written[name] = gesture_events(50 + 7 * len(written), seed=len(written))
                np.save(root / "DVSGesture" / name, written[name])
    return written


CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_aedat4(path: Path, events: np.ndarray) -> None:
    """An AEDAT 4 file (the format of tonic's CIFAR10-DVS) written by iniVation's dv-processing,
    from a structured array with fields t (µs), x, y, p."""
    import dv_processing as dv

    store = dv.EventStore()
    for t, x, y, p in zip(events["t"].tolist(), events["x"].tolist(), events["y"].tolist(), events["p"].tolist()):
        store.push_back(t, x, y, bool(p))
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig("DVS128", (128, 128)))
    writer.writeEvents(store)
    del writer  # closes the file


def cifar10_dvs_events(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    events = np.zeros(count, dtype=[("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", bool)])
    events["t"] = 1_000 + np.sort(rng.integers(0, 100_000, count))
    events["x"], events["y"] = rng.integers(0, 128, count), rng.integers(0, 128, count)
    events["p"] = rng.integers(0, 2, count).astype(bool)
    return events


def write_cifar10_dvs(root: Path, per_class: int = 10) -> dict[str, np.ndarray]:
    """tonic's CIFAR10-DVS layout: ``CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4``. Returns the
    written events by path relative to ``root/CIFAR10DVS``."""
    written = {}
    for name in CIFAR10_DVS_CLASSES:
        (root / "CIFAR10DVS" / name).mkdir(parents=True)
        for index in range(per_class):
            relative = f"{name}/cifar10_{name}_{index}.aedat4"
            written[relative] = cifar10_dvs_events(30 + index, seed=len(written))
            write_aedat4(root / "CIFAR10DVS" / relative, written[relative])
    return written


AEDAT_HEADER = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#Start-Time: 2017-01-01 10:00:00 (TZ+0000)\r\n#!END-HEADER\r\n"
OVERFLOW = 1 << 31  # a packet's eventTSOverflow counts units of 2^31 µs


def aedat_packet(kind: int, payload: bytes, size: int, overflow: int = 0, capacity: int | None = None,
                 number: int | None = None) -> bytes:
    """An AEDAT 3.1 packet: the 28-byte little-endian header, then ``capacity * size`` bytes (the
    payload, padded with zeros when the capacity exceeds the events written)."""
    number = len(payload) // size if number is None else number
    capacity = number if capacity is None else capacity
    header = np.array([kind, 1], "<i2").tobytes() + np.array([size, 4, overflow, capacity, number, number], "<i4").tobytes()
    return header + payload.ljust(capacity * size, b"\0")


def polarity_payload(x, y, p, t, valid=None) -> bytes:
    """8-byte polarity events: uint32 (x << 17 | y << 2 | p << 1 | valid), uint32 timestamp (the low 31 bits)."""
    x, y, p, t = (np.asarray(values, np.int64) for values in (x, y, p, t))
    valid = np.ones(len(x), np.int64) if valid is None else np.asarray(valid, np.int64)
    rows = np.zeros(len(x), [("data", "<u4"), ("timestamp", "<u4")])
    rows["data"] = (x << 17) | (y << 2) | (p << 1) | valid
    rows["timestamp"] = t % OVERFLOW
    return rows.tobytes()


def special_packet() -> bytes:
    """A packet of two special events (eventType 0), which readers of polarity events skip."""
    return aedat_packet(0, np.array([[7, 1000], [9, 2000]], "<u4").tobytes(), size=8)


def write_aedat31(path: Path, events: np.ndarray) -> None:
    """An AEDAT 3.1 file of the structured ``events`` (x, y, p, t in µs, t sorted): the events before
    2^31 µs in one packet, those after in packets with ``eventTSOverflow`` 1, a special-event packet
    between them, an invalid event and slack capacity in the last packet."""
    wrapped = events["t"] >= OVERFLOW
    before, after = events[~wrapped], events[wrapped]
    half = len(after) // 2
    fields = [(part["x"], part["y"], part["p"], part["t"]) for part in (before, after[:half], after[half:])]
    last = polarity_payload(*fields[2]) + polarity_payload([5], [6], [1], [int(after["t"][-1]) if len(after) else 0], valid=[0])
    path.write_bytes(AEDAT_HEADER + aedat_packet(1, polarity_payload(*fields[0]), 8) + special_packet()
                     + aedat_packet(1, polarity_payload(*fields[1]), 8, overflow=1)
                     + aedat_packet(1, last, 8, overflow=1, capacity=len(fields[2][0]) + 3))


GESTURE_EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
ORIGINAL_GESTURE_FILES = {"trials_to_train.txt": ("user01_fluorescent", "user01_led", "user02_natural"),
                          "trials_to_test.txt": ("user24_lab",)}


def write_dvs_gesture_original(root: Path, gestures: int = 3) -> dict[str, tuple[int, np.ndarray]]:
    """IBM's original layout: ``DvsGesture/userNN_<lighting>.aedat`` with ``_labels.csv`` (rows
    ``gestures`` long, apart, each after some events that belong to none) and the trials lists
    (with blank lines and trailing whitespace). The event times cross 2^31 µs, so the packets use
    the timestamp overflow. Returns ``(label, events)`` per sample name ``userNN_<lighting>/<row>``."""
    folder = root / "DvsGesture"
    folder.mkdir(parents=True)
    written = {}
    for trials, stems in ORIGINAL_GESTURE_FILES.items():
        for stem in stems:
            rng = np.random.default_rng(len(written))
            count = 40 * (gestures + 1)
            events = np.zeros(count, GESTURE_EVENT_DTYPE)
            events["x"], events["y"] = rng.integers(0, 128, count), rng.integers(0, 128, count)
            events["p"] = rng.integers(0, 2, count).astype(bool)
            events["t"] = OVERFLOW - 20_000 + np.sort(rng.choice(10_000 * (gestures + 1), count, replace=False))
            rows = ["class,startTime_usec,endTime_usec"]
            for row in range(gestures):
                label = (len(written) + 2 * row) % 11
                start = OVERFLOW - 20_000 + 10_000 * row + 7_000  # row 1 spans 2^31 µs
                end = start + 6_000
                rows.append(f"{label + 1},{start},{end}")
                written[f"{stem}/{row}"] = (label, events[(events["t"] >= start) & (events["t"] < end)])
            write_aedat31(folder / f"{stem}.aedat", events)
            (folder / f"{stem}_labels.csv").write_text("\r\n".join(rows) + "\r\n")
        (folder / trials).write_text("\n" + "".join(f"{stem}.aedat  \n\n" for stem in stems))
    return written
