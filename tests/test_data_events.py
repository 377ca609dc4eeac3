"""Event datasets: binning, the frame cache, NDA and the DataModules on files in each dataset's real
layout (tonic's DVS-Gesture .npy folders, IBM's original DVS-Gesture AEDAT 3.1 archive, CIFAR10-DVS
AEDAT 4 files, the simulated N-Fashion-MNIST)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_files import (
    AEDAT_HEADER,
    CIFAR10_DVS_CLASSES,
    OVERFLOW,
    aedat_packet,
    polarity_payload,
    special_packet,
    write_cifar10_dvs,
    write_dvs_gesture,
    write_dvs_gesture_original,
    write_fashion_mnist,
)
from qsnn_lightning.cli import main
from qsnn_lightning.data.aedat import read_polarity_events
from qsnn_lightning.data.augment import RandomRoll, neuromorphic_augmentation
from qsnn_lightning.data.events import normalize_frames
from qsnn_lightning.data.frames import FrameSettings, events_to_frames, frame_indices
from qsnn_lightning.data.modules import CIFAR10DVSDataModule, DVSGestureDataModule, NFashionMNISTDataModule
from qsnn_lightning.data.nfmnist import SENSOR, saccade_offsets, simulate
from qsnn_lightning.errors import DatasetCorruptError, DatasetNotFoundError

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])


def structured(rows: np.ndarray) -> np.ndarray:
    """tonic's structured events from (x, y, p, t) rows."""
    events = np.zeros(len(rows), EVENT_DTYPE)
    events["x"], events["y"], events["p"], events["t"] = rows[:, 0], rows[:, 1], rows[:, 2].astype(bool), rows[:, 3]
    return events


def polarity_counts(events: np.ndarray) -> tuple[int, int]:
    return int((~events["p"].astype(bool)).sum()), int(events["p"].astype(bool).sum())


# --- binning ---------------------------------------------------------------------------------
def test_frame_indices_by_number_and_by_time_hand_computed():
    events = np.zeros(7, EVENT_DTYPE)
    events["t"] = [0, 10, 20, 30, 40, 50, 99]
    # number: event i of 7 goes to floor(3 i / 7) -> sizes 3, 2, 2 (none dropped, unlike tonic's n_event_bins)
    assert frame_indices(events, 3, "number").tolist() == [0, 0, 0, 1, 1, 2, 2]
    # time: floor(3 (t - 0) / 100)
    assert frame_indices(events, 3, "time").tolist() == [0, 0, 0, 0, 1, 1, 2]


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_frames_conserve_events_per_polarity(split_by):
    rows = np.array([[x % 128, (3 * x) % 128, x % 3 == 0, 5 * x] for x in range(1001)])
    events = structured(rows)
    settings = FrameSettings("dvsgesture", timesteps=16, split_by=split_by, sensor_size=(128, 128, 2))
    frames = events_to_frames(events, settings)
    off, on = polarity_counts(events)
    assert frames.shape == (16, 2, 128, 128)
    assert frames[:, 0].sum() == off and frames[:, 1].sum() == on
    assert frames[0, 1, 0, 0] == 1  # event 0: x = y = 0, ON, first frame


def test_resize_and_cache_key_cover_every_frame_setting():
    base = FrameSettings("dvscifar10", 10, "number", (128, 128, 2), resize=48)
    assert base.frame_shape == (10, 2, 48, 48)
    changed = [FrameSettings("dvscifar10", 8, "number", (128, 128, 2), resize=48),
               FrameSettings("dvscifar10", 10, "time", (128, 128, 2), resize=48),
               FrameSettings("dvscifar10", 10, "number", (128, 128, 2), resize=64),
               FrameSettings("dvsgesture", 10, "number", (128, 128, 2), resize=48),
               FrameSettings("dvscifar10", 10, "number", (128, 128, 2), resize=48, data_version="v2")]
    keys = {base.key(), *(settings.key() for settings in changed)}
    assert len(keys) == 6 and base.key() == FrameSettings("dvscifar10", 10, "number", (128, 128, 2), 48).key()
    events = structured(np.array([[64, 64, 1, 0]]))
    assert events_to_frames(events, base).shape == (10, 2, 48, 48)


def test_area_resize_sums_every_event_into_its_block_hand_computed():
    # (x, y, p, t) -> 4x4 blocks of a 128x128 sensor at 32x32: output (row y // 4, column x // 4)
    rows = np.array([[0, 0, 1, 0], [3, 3, 1, 1], [3, 3, 1, 2], [4, 0, 0, 3], [127, 127, 0, 4], [65, 66, 1, 5]])
    settings = FrameSettings("dvsgesture", 1, "number", (128, 128, 2), resize=32, resize_mode="area")
    frames = events_to_frames(structured(rows), settings)
    expected = np.zeros((1, 2, 32, 32), np.float32)
    expected[0, 1, 0, 0] = 3  # (0, 0) and twice (3, 3): one block
    expected[0, 0, 0, 1] = 1  # x = 4 starts the second block column
    expected[0, 0, 31, 31] = 1
    expected[0, 1, 16, 16] = 1  # x = 65, y = 66
    assert np.array_equal(frames, expected)
    # many events: the block sums are torch's area interpolation times the 16 pixels of a block
    many = structured(np.array([[(7 * i) % 128, (13 * i) % 128, i % 3 == 0, i] for i in range(5000)]))
    frames = events_to_frames(many, FrameSettings("dvsgesture", 4, "number", (128, 128, 2), 32, resize_mode="area"))
    full = events_to_frames(many, FrameSettings("dvsgesture", 4, "number", (128, 128, 2)))
    area = torch.nn.functional.interpolate(torch.from_numpy(full), size=(32, 32), mode="area") * 16
    torch.testing.assert_close(torch.from_numpy(frames), area)
    off, on = polarity_counts(many)
    assert frames[:, 0].sum() == off and frames[:, 1].sum() == on
    bilinear = events_to_frames(many, FrameSettings("dvsgesture", 4, "number", (128, 128, 2), 32))
    assert bilinear.sum() < len(many) / 8  # what area mode is for: bilinear keeps ~1/16 of the event mass


def test_resize_mode_changes_the_cache_key_only_when_it_changes_the_frames():
    bilinear = FrameSettings("dvscifar10", 10, "number", (128, 128, 2), resize=48)
    area = FrameSettings("dvscifar10", 10, "number", (128, 128, 2), resize=48, resize_mode="area")
    assert bilinear.key() == "dvscifar10-T10-number-a19c1862e574"  # the key from before resize_mode existed
    assert area.key() != bilinear.key() and area.frame_shape == bilinear.frame_shape
    unresized = [FrameSettings("dvsgesture", 16, "number", (128, 128, 2), resize_mode=mode) for mode in ("bilinear", "area")]
    assert unresized[0].key() == unresized[1].key() == "dvsgesture-T16-number-b11d1fcf2145"
    with pytest.raises(ValueError, match="resize_mode must be one of bilinear, area, got 'nearest'"):
        FrameSettings("dvsgesture", 16, "number", (128, 128, 2), resize=32, resize_mode="nearest")


# --- NDA -------------------------------------------------------------------------------------
def graded_frames(steps: int = 4) -> torch.Tensor:
    """Frame t is (t + 1) times frame 0, so one transform applied to all frames keeps that ratio."""
    base = torch.zeros(2, 32, 32)
    base[0, 4:12, 6:20] = 1.0
    base[1, 20:28, 3:9] = 2.0
    return torch.stack([base * (t + 1) for t in range(steps)])


@pytest.mark.parametrize("kind", ["roll", "rotate", "shear", "all"])
def test_nda_moves_all_frames_of_a_sample_identically(kind):
    amounts = {"roll": (5, 0, 0), "rotate": (0, 30, 0), "shear": (0, 0, 30), "all": (5, 30, 30)}[kind]
    augment = neuromorphic_augmentation(*amounts, flip=True)
    frames = graded_frames()
    torch.manual_seed(0)
    changed = 0
    for _ in range(20):
        out = augment(frames)
        assert out.shape == frames.shape
        for t in range(1, 4):
            torch.testing.assert_close(out[t], out[0] * (t + 1))
        changed += not torch.equal(out, frames)
    assert changed >= 15
    assert torch.equal(frames, graded_frames())  # the input is left alone


def test_roll_is_a_torch_roll_within_the_limit():
    frames = graded_frames()
    torch.manual_seed(1)
    for _ in range(10):
        out = RandomRoll(5)(frames)
        matches = [(dy, dx) for dy in range(-5, 6) for dx in range(-5, 6)
                   if torch.equal(out, torch.roll(frames, (dy, dx), dims=(-2, -1)))]
        assert matches


# --- DVS-Gesture -----------------------------------------------------------------------------
@pytest.fixture
def gesture(tmp_path):
    return tmp_path, write_dvs_gesture(tmp_path)


def gesture_module(root: Path, **settings) -> DVSGestureDataModule:
    arguments = dict(data_dir=str(root), timesteps=4, batch_size=3, val_fraction=0.25, download=False, augment=False)
    return DVSGestureDataModule(**(arguments | settings))


def test_dvs_gesture_splits_shapes_labels_and_event_conservation(gesture):
    root, written = gesture
    datamodule = gesture_module(root)
    datamodule.prepare_data()
    datamodule.setup()
    assert datamodule.input_shape == (2, 128, 128) and datamodule.num_classes == 11
    assert len(datamodule.train_set) + len(datamodule.val_set) == 9  # 3 users/lightings x 3 labels
    assert len(datamodule.val_set) == 2 and len(datamodule.test_set) == 3  # round(9 / 4); the own test split
    frames, labels = next(iter(datamodule.train_dataloader()))
    assert frames.shape == (3, 4, 2, 128, 128) and frames.dtype == torch.float32
    assert labels.dtype == torch.int64 and frames.amax(dim=(1, 2, 3, 4)).eq(1).all()  # normalized per sample
    for split in (True, False):
        source = datamodule.source(split)
        for index, name in enumerate(source.names):
            rows = written[name]
            counts = datamodule.cache.load(source, index)  # before normalization
            assert source.labels[index] == int(Path(name).stem)
            assert counts[:, 0].sum() == (rows[:, 2] == 0).sum() and counts[:, 1].sum() == (rows[:, 2] == 1).sum()
            assert (counts.sum(axis=(1, 2, 3)) >= len(rows) // 4).all()  # equal event counts per frame
    test_names = datamodule.source(False).names
    assert all(name.startswith("ibmGestureTest/user24_") for name in test_names)


def test_second_epoch_reads_the_cache_and_the_build_shows_progress(gesture, capfd):
    root, _ = gesture
    datamodule = gesture_module(root)
    datamodule.prepare_data()
    assert "DVS-Gesture train frames" in capfd.readouterr().err
    datamodule.setup()
    cached = sorted(datamodule.cache.directory.rglob("*.npz"))
    stamps = [path.stat().st_mtime_ns for path in cached]
    first = [batch for batch in datamodule.val_dataloader()]
    for path in (root / "DVSGesture").rglob("*.npy"):  # the events are no longer readable
        path.write_bytes(b"gone")
    second = [batch for batch in datamodule.val_dataloader()]
    for (frames_1, labels_1), (frames_2, labels_2) in zip(first, second):
        assert torch.equal(frames_1, frames_2) and torch.equal(labels_1, labels_2)
    assert [path.stat().st_mtime_ns for path in cached] == stamps and len(cached) == 12
    datamodule.prepare_data()  # nothing left to build: no progress bar, no error from the unreadable events
    assert "frames" not in capfd.readouterr().err


def test_changed_timesteps_use_a_new_cache_and_keep_the_old(gesture):
    root, _ = gesture
    four, eight = gesture_module(root, timesteps=4), gesture_module(root, timesteps=8)
    for datamodule in (four, eight):
        datamodule.prepare_data()
        datamodule.setup()
    assert four.cache.directory != eight.cache.directory
    assert four.train_set[0][0].shape == (4, 2, 128, 128) and eight.train_set[0][0].shape == (8, 2, 128, 128)
    assert len(list(four.cache.directory.rglob("*.npz"))) == len(list(eight.cache.directory.rglob("*.npz"))) == 12


def test_corrupt_event_file_is_one_line_and_the_cache_of_the_others_resumes(gesture):
    root, written = gesture
    broken = root / "DVSGesture" / "ibmGestureTrain" / "user01_led" / "1.npy"
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 2])  # truncated
    datamodule = gesture_module(root)
    with pytest.raises(DatasetCorruptError) as error:
        datamodule.prepare_data()
    message = str(error.value)
    assert str(broken) in message and "\n" not in message and "delete it" in message
    cached = {path.relative_to(datamodule.cache.directory).as_posix(): path.stat().st_mtime_ns
              for path in datamodule.cache.directory.rglob("*.npz")}
    assert len(cached) == 8 and "ibmGestureTrain/user01_led/1.npy.npz" not in cached  # the 8 others are kept
    broken.write_bytes(good)
    datamodule.prepare_data()  # resumes: converts the one missing sample only
    after = {path.relative_to(datamodule.cache.directory).as_posix(): path.stat().st_mtime_ns
             for path in datamodule.cache.directory.rglob("*.npz")}
    assert len(after) == 12 and all(after[name] == stamp for name, stamp in cached.items())
    assert not list(datamodule.cache.directory.rglob("*.tmp"))


def test_corrupt_cache_file_is_one_line_naming_it(gesture):
    root, _ = gesture
    datamodule = gesture_module(root)
    datamodule.prepare_data()
    datamodule.setup()
    cache_file = datamodule.cache.path(datamodule.source(False).names[0])
    cache_file.write_bytes(cache_file.read_bytes()[:40])
    with pytest.raises(DatasetCorruptError, match="cached frames .* cannot be read") as error:
        datamodule.test_set[0]
    assert str(cache_file) in str(error.value) and "\n" not in str(error.value)


def test_damaged_cache_file_is_rebuilt_when_the_data_is_prepared(gesture):
    root, _ = gesture
    datamodule = gesture_module(root)
    datamodule.prepare_data()
    datamodule.setup()
    source = datamodule.source(False)
    cache_file = datamodule.cache.path(source.names[0])
    whole = datamodule.cache.load(source, 0)
    damaged = bytearray(cache_file.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte inside the compressed frames
    cache_file.write_bytes(bytes(damaged))
    assert not datamodule.cache.intact(cache_file)
    datamodule.prepare_data()  # before training: found and rebuilt from its events
    assert datamodule.cache.intact(cache_file) and np.array_equal(datamodule.cache.load(source, 0), whole)


def test_missing_event_dataset_is_one_line_with_where_to_put_the_files(tmp_path):
    for datamodule, needle in ((gesture_module(tmp_path), "DVSGesture/ibmGestureTrain"),
                               (CIFAR10DVSDataModule(data_dir=str(tmp_path), download=False), "CIFAR10DVS/airplane")):
        with pytest.raises(DatasetNotFoundError) as error:
            datamodule.prepare_data()
        assert needle in str(error.value) and "\n" not in str(error.value) and str(tmp_path) in str(error.value)


def test_training_frames_get_nda_and_evaluation_frames_are_untouched(gesture):
    root, _ = gesture
    datamodule = gesture_module(root, augment=True)
    datamodule.prepare_data()
    datamodule.setup()
    for subset in (datamodule.val_set, datamodule.test_set):
        for position, index in enumerate(subset.indices):
            counts = torch.from_numpy(datamodule.cache.load(subset.source.source, index))
            assert torch.equal(subset[position][0], counts / counts.max())
    torch.manual_seed(0)
    index = datamodule.train_set.indices[0]
    plain = normalize_frames(torch.from_numpy(datamodule.cache.load(datamodule.source(True), index)))
    draws = [datamodule.train_set[0][0] for _ in range(5)]
    assert all(draw.shape == plain.shape for draw in draws)
    assert any(not torch.equal(draw, plain) for draw in draws)


# --- DVS-Gesture from IBM's original archive ----------------------------------------------------
def test_aedat31_reader_decodes_hand_written_events_skipping_other_packets_and_invalid_events(tmp_path):
    path = tmp_path / "user01_led.aedat"
    first = aedat_packet(1, polarity_payload([0, 127, 64], [5, 0, 127], [1, 0, 1], [10, 20, OVERFLOW - 1]), 8)
    # timestamps 3 and 40 after one overflow; the middle event's valid bit is clear; capacity leaves slack
    second = aedat_packet(1, polarity_payload([1, 99, 2], [2, 99, 3], [0, 1, 1], [3, 7, 40], valid=[1, 0, 1]), 8,
                          overflow=1, capacity=5)
    path.write_bytes(AEDAT_HEADER + first + special_packet() + second)
    events = read_polarity_events(path)
    assert events["x"].tolist() == [0, 127, 64, 1, 2]
    assert events["y"].tolist() == [5, 0, 127, 2, 3]
    assert events["p"].tolist() == [True, False, True, False, True]
    assert events["t"].tolist() == [10, 20, OVERFLOW - 1, OVERFLOW + 3, OVERFLOW + 40]
    assert events.dtype.names == ("x", "y", "p", "t")  # tonic's DVSGesture fields
    path.write_bytes(AEDAT_HEADER)
    assert len(read_polarity_events(path)) == 0


def test_aedat31_reader_agrees_with_tonics_lower_level_reader(tmp_path):
    """tonic 1.7.0's read_dvs_ibm fails (three return values unpacked into two); its header and packet
    readers with read_dvs_ibm's bit positions give the same x, y, p, t on polarity-only packets."""
    import tonic.io

    path = tmp_path / "user03_led.aedat"
    rng = np.random.default_rng(3)
    x, y, p = rng.integers(0, 128, 50), rng.integers(0, 128, 50), rng.integers(0, 2, 50)
    t = np.sort(rng.integers(0, 10**6, 50))
    path.write_bytes(AEDAT_HEADER + aedat_packet(1, polarity_payload(x[:20], y[:20], p[:20], t[:20]), 8)
                     + aedat_packet(1, polarity_payload(x[20:], y[20:], p[20:], t[20:]), 8))
    version, start, _ = tonic.io.read_aedat_header_from_file(str(path))
    raw = tonic.io.get_aer_events_from_file(str(path), version, start)
    ours = read_polarity_events(path)
    assert version == 3.1 and ours["t"].tolist() == raw["timeStamp"].tolist() == t.tolist()
    assert ours["x"].tolist() == ((raw["address"] >> 17) & 0x1FFF).tolist() == x.tolist()
    assert ours["y"].tolist() == ((raw["address"] >> 2) & 0x1FFF).tolist() == y.tolist()
    assert ours["p"].tolist() == ((raw["address"] >> 1) & 1).astype(bool).tolist()


@pytest.mark.parametrize("damage, needle", [
    (lambda raw: b"#!AER-DAT2.0\r\n" + raw[14:], "does not start with #!AER-DAT3"),
    (lambda raw: raw.replace(b"#!END-HEADER\r\n", b"#!END\r\n"), "no #!END-HEADER"),
    (lambda raw: raw.replace(b"#Format", b"Format"), "header line does not start with #"),
    (lambda raw: raw[:-5], "announces 16 bytes, 11 remain"),
    (lambda raw: raw + b"\1\0\0", "packet header at byte"),
])
def test_aedat31_bad_header_or_truncated_packet_is_one_line_naming_the_file(tmp_path, damage, needle):
    path = tmp_path / "user02_natural.aedat"
    path.write_bytes(damage(AEDAT_HEADER + aedat_packet(1, polarity_payload([1, 2], [3, 4], [0, 1], [5, 6]), 8)))
    with pytest.raises(DatasetCorruptError, match=needle) as error:
        read_polarity_events(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value) and "extract it again" in str(error.value)


@pytest.fixture
def original_gesture(tmp_path):
    return tmp_path, write_dvs_gesture_original(tmp_path)


def test_original_archive_samples_are_cut_by_label_rows_and_split_by_the_trial_lists(original_gesture):
    root, written = original_gesture
    datamodule = gesture_module(root)
    datamodule.prepare_data()
    datamodule.setup()
    train, test = datamodule.source(True), datamodule.source(False)
    assert list(train.names) == [f"{stem}/{row}" for stem in ("user01_fluorescent", "user01_led", "user02_natural")
                                 for row in range(3)]
    assert list(test.names) == ["user24_lab/0", "user24_lab/1", "user24_lab/2"]
    assert len(datamodule.train_set) + len(datamodule.val_set) == 9 and len(datamodule.test_set) == 3
    for source in (train, test):
        for index, name in enumerate(source.names):
            label, expected = written[name]
            events = source.read(index)
            assert source.labels[index] == label and len(expected) > 0
            assert np.array_equal(events, expected)  # exactly the events of [start, end)
            counts = datamodule.cache.load(source, index)
            assert counts.shape == (4, 2, 128, 128) and counts.sum() == len(expected)
    assert written["user01_led/1"][1]["t"].min() < OVERFLOW <= written["user01_led/1"][1]["t"].max()  # spans it
    frames, labels = next(iter(datamodule.train_dataloader()))
    assert frames.shape == (3, 4, 2, 128, 128) and labels.dtype == torch.int64
    assert "9 train / 3 test samples" in datamodule.split_summary(9, 3)
    assert datamodule.split_summary(1176, 288) == (
        "dvsgesture: original archive split (DvsGesture/*.aedat, trials_to_train/test.txt): 1176 train / 288 test samples"
    )


def test_sample_counts_follow_the_trial_lists(original_gesture):
    root, _ = original_gesture
    folder = root / "DvsGesture"
    (folder / "trials_to_train.txt").write_text("user02_natural.aedat\n\nuser01_led.aedat\t\n")
    (folder / "trials_to_test.txt").write_text("user01_fluorescent.aedat\nuser24_lab.aedat\n")
    datamodule = gesture_module(root, val_fraction=0.0)
    datamodule.setup()
    assert len(datamodule.train_set) == 6 and len(datamodule.test_set) == 6
    assert {name.split("/")[0] for name in datamodule.source(False).names} == {"user01_fluorescent", "user24_lab"}


def test_original_layout_is_preferred_over_tonics_copy_and_cached_apart(tmp_path):
    write_dvs_gesture(tmp_path)  # 9 train / 3 test .npy samples
    write_dvs_gesture_original(tmp_path, gestures=2)  # 6 train / 2 test gestures
    original = gesture_module(tmp_path)
    original.prepare_data()
    original.setup()
    assert original.original and len(original.source(True).names) == 6 and len(original.source(False).names) == 2
    (tmp_path / "DvsGesture" / "trials_to_train.txt").rename(tmp_path / "DvsGesture" / "trials.txt")
    fallback = gesture_module(tmp_path)
    fallback.prepare_data()
    fallback.setup()
    assert not fallback.original and len(fallback.source(True).names) == 9 and len(fallback.source(False).names) == 3
    assert fallback.cache.directory != original.cache.directory
    assert fallback.cache.directory.name == "dvsgesture-T4-number-" + fallback.frame_settings.key().rsplit("-", 1)[1]
    assert fallback.frame_settings.data_version == "" and original.frame_settings.data_version
    summary = fallback.split_summary(1077, 264)
    assert summary.startswith("dvsgesture: tonic's preprocessed copy") and "1176 / 288" in summary and "\n" not in summary


def test_original_layout_bad_input_is_one_line_naming_the_file(original_gesture):
    root, _ = original_gesture
    folder = root / "DvsGesture"
    (folder / "trials_to_test.txt").write_text("user24_lab.aedat\nuser29_led.aedat\n")
    with pytest.raises(DatasetNotFoundError) as error:
        gesture_module(root).prepare_data()
    message = str(error.value)
    assert "DvsGesture/user29_led.aedat (named by trials_to_test.txt)" in message and "DvsGesture.tar.gz" in message
    assert "\n" not in message and "ibmGestureTrain" not in message
    (folder / "trials_to_test.txt").write_text("user24_lab.aedat\n")

    labels = folder / "user01_led_labels.csv"
    good = labels.read_text()
    for broken, needle in (("class,start,end\n1,2,3\n", "first line is not class,startTime_usec,endTime_usec"),
                           (good + "4,100\n", "line 5 is not three integers"),
                           (good + "12,100,200\n", "line 5 needs a class in 1..11"),
                           ("class,startTime_usec,endTime_usec\n", "lists no gestures")):
        labels.write_text(broken)
        with pytest.raises(DatasetCorruptError, match=needle) as error:
            gesture_module(root).setup()
        assert str(labels) in str(error.value) and "\n" not in str(error.value)
    labels.unlink()
    with pytest.raises(DatasetNotFoundError, match="user01_led_labels.csv") as error:
        gesture_module(root).prepare_data()
    assert "\n" not in str(error.value)
    labels.write_text(good)

    aedat = folder / "user01_led.aedat"
    aedat.write_bytes(aedat.read_bytes()[:-20])
    datamodule = gesture_module(root)
    with pytest.raises(DatasetCorruptError) as error:
        datamodule.prepare_data()
    message = str(error.value)
    assert message.startswith(f"AEDAT file {aedat} is corrupt or truncated") and "(2 more unreadable" in message
    assert "\n" not in message and len(list(datamodule.cache.directory.rglob("*.npz"))) == 6  # the other training samples cached


@pytest.mark.slow
def test_cli_fast_dev_run_trains_on_the_original_archive(original_gesture):
    root, _ = original_gesture
    result = subprocess.run(
        [sys.executable, "-m", "qsnn_lightning.cli", "train", "dvsgesture_1w2u", f"data.data_dir={root}",
         "trainer.fast_dev_run=true", "data.batch_size=2", "data.download=false", "model.timesteps=2",
         "trainer.accelerator=cpu", f"run_dir={root / 'runs'}"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = result.stdout + result.stderr
    assert "dvsgesture: original archive split (DvsGesture/*.aedat, trials_to_train/test.txt): 9 train / 3 test samples" in log
    (cache,) = (root / "frames").iterdir()
    assert cache.name.startswith("dvsgesture-T2-number-") and len(list(cache.rglob("user*/*.npz"))) == 12


# --- CIFAR10-DVS -----------------------------------------------------------------------------
def test_cifar10_dvs_reads_aedat4_splits_900_100_per_class_and_resizes(tmp_path):
    written = write_cifar10_dvs(tmp_path, per_class=10)
    datamodule = CIFAR10DVSDataModule(data_dir=str(tmp_path), timesteps=5, batch_size=4, val_fraction=0.0,
                                      download=False, augment=False)
    datamodule.prepare_data()
    datamodule.setup()
    assert len(datamodule.train_set) == 90 and len(datamodule.test_set) == 10  # 9 / 1 per class (90% / 10%)
    test = datamodule.source(False)
    assert sorted(test.labels) == list(range(10))
    assert set(test.names) == {f"{name}/cifar10_{name}_9.aedat4" for name in CIFAR10_DVS_CLASSES}  # last by name
    assert not set(test.names) & set(datamodule.source(True).names)
    frames, _ = next(iter(datamodule.test_dataloader()))
    assert frames.shape == (4, 5, 2, 48, 48) and datamodule.input_shape == (2, 48, 48)
    full = CIFAR10DVSDataModule(data_dir=str(tmp_path), timesteps=5, resize=128, download=False, subset=3)
    full.prepare_data()
    source = full.source(True)
    for index in range(3):
        counts = full.cache.load(source, index)
        off, on = polarity_counts(written[source.names[index]])
        assert counts.shape == (5, 2, 128, 128) and counts[:, 0].sum() == off and counts[:, 1].sum() == on


def test_cifar10_dvs_truncated_aedat4_is_one_line_naming_it(tmp_path):
    write_cifar10_dvs(tmp_path, per_class=2)
    broken = tmp_path / "CIFAR10DVS" / "dog" / "cifar10_dog_0.aedat4"
    broken.write_bytes(broken.read_bytes()[:200])
    datamodule = CIFAR10DVSDataModule(data_dir=str(tmp_path), timesteps=2, download=False)
    with pytest.raises(DatasetCorruptError) as error:
        datamodule.prepare_data()
    assert str(broken) in str(error.value) and "\n" not in str(error.value)
    assert len(list(datamodule.cache.directory.rglob("*.npz"))) == 19


# --- N-Fashion-MNIST -------------------------------------------------------------------------
def test_simulator_hand_checked_cases_and_determinism():
    blank = np.zeros((1, 28, 28), np.uint8)
    events, counts = simulate(blank, np.random.default_rng(0))
    assert len(events) == 0 and counts.tolist() == [0]
    dot = np.zeros((1, 28, 28), np.uint8)
    dot[0, 10, 10] = 255
    events, counts = simulate(dot, np.random.default_rng(0))
    assert counts.tolist() == [len(events)] and len(events) > 0
    path = saccade_offsets()
    assert path.shape == (13, 2) and (path[0] == path[-1]).all()  # the triangle closes
    # every event lies where the moving dot can be seen: within one pixel of its path
    assert (events["x"] >= 10 + path[:, 0].min()).all() and (events["x"] <= 11 + path[:, 0].max()).all()
    assert (events["y"] >= 10 + path[:, 1].min()).all() and (events["y"] <= 11 + path[:, 1].max()).all()
    assert (np.diff(events["t"].astype(np.int64)) >= 0).all() and events["t"].max() < 300_000
    assert {0, 1} == set(events["p"].tolist())  # ON where the dot arrives, OFF where it leaves
    again, _ = simulate(dot, np.random.default_rng(0))
    assert np.array_equal(events, again)


def test_nfashion_mnist_writes_events_once_and_trains_through_the_event_pipeline(tmp_path):
    write_fashion_mnist(tmp_path, train=20, test=10)
    datamodule = NFashionMNISTDataModule(data_dir=str(tmp_path), timesteps=3, split_by="time", batch_size=4,
                                         download=False, augment=True)
    datamodule.prepare_data()
    datamodule.setup()
    events_dir = tmp_path / "NFashionMNIST" / "v1"
    stamps = {path.name: path.stat().st_mtime_ns for path in events_dir.glob("*.npy")}
    assert len(stamps) == 6 and datamodule.input_shape == (2, SENSOR, SENSOR)
    assert len(datamodule.train_set) == 18 and len(datamodule.val_set) == 2 and len(datamodule.test_set) == 10
    labels = np.load(events_dir / "test_labels.npy")
    assert labels.tolist() == [(100 + i) % 10 for i in range(10)]  # the idx labels, in order
    source = datamodule.source(False)
    for index in range(10):
        events = source.read(index)
        counts = datamodule.cache.load(source, index)
        assert counts[:, 0].sum() == (events["p"] == 0).sum() and counts[:, 1].sum() == (events["p"] == 1).sum()
    frames, _ = next(iter(datamodule.train_dataloader()))
    assert frames.shape == (4, 3, 2, SENSOR, SENSOR)
    NFashionMNISTDataModule(data_dir=str(tmp_path), timesteps=3, download=False).prepare_data()
    assert {path.name: path.stat().st_mtime_ns for path in events_dir.glob("*.npy")} == stamps  # written once


def test_truncated_nfashion_mnist_events_are_one_line_naming_the_file(tmp_path):
    write_fashion_mnist(tmp_path, train=20, test=10)
    NFashionMNISTDataModule(data_dir=str(tmp_path), timesteps=2, download=False).prepare_data()
    events_file = tmp_path / "NFashionMNIST" / "v1" / "train_events.npy"
    events_file.write_bytes(events_file.read_bytes()[:1000])
    with pytest.raises(DatasetCorruptError) as error:
        NFashionMNISTDataModule(data_dir=str(tmp_path), timesteps=4, download=False).prepare_data()
    assert str(events_file) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_cli_stops_with_one_line_on_a_corrupt_event_file_and_keeps_the_cache(gesture):
    root, _ = gesture
    broken = root / "DVSGesture" / "ibmGestureTest" / "user24_fluorescent_led" / "2.npy"
    broken.write_bytes(b"\x93NUMPY not really")
    result = subprocess.run(
        [sys.executable, "-m", "qsnn_lightning.cli", "train", "dvsgesture_1w2u", f"data.data_dir={root}",
         "data.download=false", "model.timesteps=2", f"run_dir={root / 'runs'}"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("qsnn: error: event file") and str(broken) in last and "Traceback" not in result.stderr
    assert len(list((root / "frames").rglob("*.npz"))) == 11 and not (root / "runs").exists()


@pytest.mark.slow
def test_cli_trains_the_mcu_experiment_on_area_resized_32x32_frames(gesture):
    root, written = gesture
    runs = root / "runs"
    assert main(["train", "dvsgesture_mcu_1w2u", f"data.data_dir={root}", "data.download=false", f"run_dir={runs}",
                 "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]) == 0
    (cache,) = (root / "frames").iterdir()
    for name, rows in written.items():  # every event of every sample is in its 32x32 frames
        with np.load(cache / f"{name}.npz") as archive:
            frames = archive["frames"]
        assert frames.shape == (16, 2, 32, 32) and frames.sum() == len(rows)
    (run_dir,) = (runs / "dvsgesture_mcu_1w2u").iterdir()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 0 and checkpoint["hyper_parameters"]["spec"]["arch"] == "dvsmcunet"
    assert tuple(checkpoint["hyper_parameters"]["input_shape"]) == (2, 32, 32)
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
