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
