"""Static image DataModules, fed with tiny datasets written in each dataset's real on-disk format."""

import gzip
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler
from torchvision import transforms

from dataset_files import (
    TINY_VAL,
    TINY_WNIDS,
    cifar_images,
    fmnist_labels,
    fmnist_pixels,
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_tiny_imagenet,
)
from qsnn_lightning.data.info import dataset_info
from qsnn_lightning.data.modules import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
    TinyImageNetDataModule,
)
from qsnn_lightning.data.static import (
    DEBIAN_FASHION_MNIST_DIR,
    Cutout,
    NormalizedArraySubset,
    StaticImageData,
    read_idx,
)
from qsnn_lightning.errors import DatasetCorruptError, DatasetNotFoundError

ALL_DATAMODULES = [FashionMNISTDataModule, CIFAR10DataModule, CIFAR100DataModule, TinyImageNetDataModule]
FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- shared API ---------------------------------------------------------------------------------
@pytest.mark.parametrize("datamodule_class", ALL_DATAMODULES)
def test_attributes_come_from_info_and_hyperparameters_are_saved(datamodule_class, tmp_path):
    datamodule = datamodule_class(data_dir=str(tmp_path), batch_size=7, subset=3)
    info = dataset_info(datamodule_class.name)
    assert issubclass(datamodule_class, StaticImageData)
    assert (datamodule.num_classes, datamodule.input_shape) == (info.num_classes, info.input_shape)
    assert datamodule.hparams["batch_size"] == 7 and datamodule.hparams["subset"] == 3
    assert datamodule.hparams["val_fraction"] == 0.1 and datamodule.hparams["seed"] == 0
    assert datamodule.hparams == vars(datamodule.settings) == datamodule.hparams_initial  # Lightning's copy of them


@pytest.mark.parametrize("arguments", [{"val_fraction": 1.0}, {"val_fraction": -0.1}, {"batch_size": 0}, {"subset": 0}])
def test_invalid_arguments_are_refused(arguments):
    with pytest.raises(ValueError):
        FashionMNISTDataModule(**arguments)


def test_cutout_zeroes_one_clipped_square_and_leaves_its_input_alone():
    torch.manual_seed(0)
    image = torch.ones(3, 32, 32)
    for _ in range(50):
        out = Cutout(16)(image)
        rows, cols = torch.nonzero(out[0] == 0, as_tuple=True)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 8 <= height <= 16 and 8 <= width <= 16
        assert len(rows) == height * width  # one solid rectangle
        assert torch.equal(out[0] == 0, out[2] == 0)
    assert torch.all(image == 1)


# --- Fashion-MNIST ------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_batches_labels_and_normalization(tmp_path, compress):
    write_fashion_mnist(tmp_path, train=20, test=10, compress=compress)
    datamodule = FashionMNISTDataModule(data_dir=str(tmp_path), batch_size=8, val_fraction=0.25, augment=False)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")

    images, labels = next(iter(datamodule.test_dataloader()))
    assert images.shape == (8, 1, 28, 28) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.tolist() == fmnist_labels(10, 100)[:8].tolist()
    expected = (torch.from_numpy(fmnist_pixels(10, 100)[:8]).float() / 255 - FMNIST_MEAN) / FMNIST_STD
    torch.testing.assert_close(images[:, 0], expected)
    pixel = (100 + 7 * 2 + 3 + 3 * 5) % 256  # image 2, row 3, column 5
    assert images[2, 0, 3, 5].item() == pytest.approx((pixel / 255 - FMNIST_MEAN) / FMNIST_STD, abs=1e-6)

    image, label = datamodule.train_set[0]  # augment=False: training images are not altered either
    source_index = datamodule.train_set.indices[0]
    expected = (torch.from_numpy(fmnist_pixels(20, 0)[source_index]).float() / 255 - FMNIST_MEAN) / FMNIST_STD
    torch.testing.assert_close(image[0], expected)
    assert label == source_index % 10


def test_fashion_mnist_split_sizes_disjointness_and_determinism(tmp_path):
    write_fashion_mnist(tmp_path, train=20)

    def split(seed, **arguments):
        datamodule = FashionMNISTDataModule(data_dir=str(tmp_path), val_fraction=0.25, seed=seed, **arguments)
        datamodule.setup("fit")
        return list(datamodule.train_set.indices), list(datamodule.val_set.indices)

    train, val = split(seed=3)
    assert (len(train), len(val)) == (15, 5)
    assert sorted(train + val) == list(range(20))
    assert split(seed=3) == (train, val)
    assert split(seed=4) != (train, val)
    assert split(seed=3, subset=4) == (train[:4], val[:4])


def test_fashion_mnist_loaders_shuffle_only_training_and_augment_only_training(tmp_path):
    write_fashion_mnist(tmp_path)
    datamodule = FashionMNISTDataModule(data_dir=str(tmp_path), num_workers=2, batch_size=4)
    datamodule.setup()
    train, val, test = datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader()
    assert isinstance(train.sampler, RandomSampler) and not train.drop_last
    assert isinstance(val.sampler, SequentialSampler) and isinstance(test.sampler, SequentialSampler)
    assert all(loader.persistent_workers and loader.num_workers == 2 for loader in (train, val, test))
    train_steps = [type(step) for step in datamodule.train_set.transform.transforms]
    assert transforms.RandomCrop in train_steps and transforms.RandomHorizontalFlip in train_steps
    assert datamodule.train_set.transform.transforms[0].padding == 2
    assert isinstance(datamodule.val_set, NormalizedArraySubset) and isinstance(datamodule.test_set, NormalizedArraySubset)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_fashion_mnist_batched_evaluation_transform_equals_the_pil_path(tmp_path, num_workers):
    """Unaugmented splits are read a batch at a time; every value equals ToTensor then Normalize of its PIL image."""
    write_fashion_mnist(tmp_path, train=40, test=12)
    datamodule = FashionMNISTDataModule(
        data_dir=str(tmp_path), batch_size=8, val_fraction=0.25, augment=False, num_workers=num_workers
    )
    datamodule.setup()
    pil_path = datamodule.eval_transform()
    for subset in (datamodule.train_set, datamodule.val_set, datamodule.test_set):
        assert isinstance(subset, NormalizedArraySubset)
        images, labels = map(torch.cat, zip(*datamodule._loader(subset, shuffle=False)))
        expected = torch.stack([pil_path(subset.source[i][0]) for i in subset.indices])
        assert images.dtype == torch.float32 and torch.equal(images, expected)
        assert labels.tolist() == [subset.source[i][1] for i in subset.indices]
        image, label = subset[3]
        assert torch.equal(image, pil_path(subset.source[subset.indices[3]][0])) and label == subset.source[subset.indices[3]][1]


def test_fashion_mnist_is_found_in_torchvision_raw_folder(tmp_path):
    write_fashion_mnist(tmp_path / "FashionMNIST" / "raw", compress=False)
    datamodule = FashionMNISTDataModule(data_dir=str(tmp_path), download=False, subset=5)
    datamodule.prepare_data()
    datamodule.setup("test")
    assert len(datamodule.test_set) == 5 and datamodule.train_set is None


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package():
    assert read_idx(DEBIAN_FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz", 2049).shape == (10000,)
    assert read_idx(DEBIAN_FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz", 2049).shape == (60000,)
    datamodule = FashionMNISTDataModule(subset=64, batch_size=64, download=False)
    datamodule.prepare_data()
    datamodule.setup()
    for loader in (datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader()):
        images, labels = next(iter(loader))
        assert images.shape == (64, 1, 28, 28)
        assert 0 <= labels.min() and labels.max() <= 9


# --- CIFAR --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "datamodule_class, writer, mean, std",
    [
        (CIFAR10DataModule, write_cifar10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        (CIFAR100DataModule, write_cifar100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    ],
)
def test_cifar_batches_labels_and_augmentation(tmp_path, cifar_without_md5, datamodule_class, writer, mean, std):
    writer(tmp_path)
    datamodule = datamodule_class(data_dir=str(tmp_path), batch_size=4, val_fraction=0.2)
    datamodule.prepare_data()
    datamodule.setup()
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (16, 4, 6)

    images, labels = next(iter(datamodule.test_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.tolist() == datamodule.test_set.source.targets[:4]
    colors = torch.from_numpy(cifar_images(4, 200)[:, ::1024]).float() / 255  # [image, channel]
    expected = (colors - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(images.mean(dim=(2, 3)), expected)

    train_steps = [type(step) for step in datamodule.train_set.transform.transforms]
    assert train_steps == [
        transforms.RandomCrop,
        transforms.RandomHorizontalFlip,
        transforms.AutoAugment,
        transforms.ToTensor,
        transforms.Normalize,
        Cutout,
    ]
    torch.manual_seed(0)
    draws = [datamodule.train_set[0][0] for _ in range(4)]
    assert not all(torch.equal(draws[0], draw) for draw in draws[1:])
    for split in (datamodule.val_set, datamodule.test_set):
        assert [type(step) for step in split.transform.transforms] == [transforms.ToTensor, transforms.Normalize]
        assert torch.equal(split[0][0], split[0][0])


def test_cifar_without_augment_trains_on_evaluation_transform(tmp_path, cifar_without_md5):
    write_cifar10(tmp_path)
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path), augment=False, subset=3)
    datamodule.setup("fit")
    assert len(datamodule.train_set) == 3 and len(datamodule.val_set) == 2
    assert [type(step) for step in datamodule.train_set.transform.transforms] == [
        transforms.ToTensor,
        transforms.Normalize,
    ]


def test_cifar_files_failing_md5_are_reported_as_corrupt(tmp_path):
    write_cifar10(tmp_path)
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path), download=False)
    datamodule.prepare_data()  # every file is present
    with pytest.raises(DatasetCorruptError) as error:
        datamodule.setup("fit")
    assert "data_batch_1" in one_line(error) and str(tmp_path) in str(error.value)


# --- TinyImageNet -------------------------------------------------------------------------------
def test_tiny_imagenet_labels_come_from_sorted_wnids_and_val_annotations(tmp_path):
    write_tiny_imagenet(tmp_path)
    datamodule = TinyImageNetDataModule(data_dir=str(tmp_path), batch_size=5, val_fraction=0.25)
    datamodule.prepare_data()
    datamodule.setup()
    class_index = {wnid: index for index, wnid in enumerate(sorted(TINY_WNIDS))}

    images, labels = next(iter(datamodule.test_dataloader()))
    assert images.shape == (5, 3, 64, 64) and labels.dtype == torch.int64
    assert labels.tolist() == [class_index[wnid] for _, wnid in TINY_VAL]

    assert (len(datamodule.train_set), len(datamodule.val_set)) == (9, 3)
    for path, label in datamodule.train_set.source.samples:
        assert label == class_index[path.parent.parent.name]
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (5, 3, 64, 64)  # greyscale JPEGs come out with three channels
    train_steps = [type(step) for step in datamodule.train_set.transform.transforms]
    assert transforms.RandomCrop in train_steps and transforms.RandomHorizontalFlip in train_steps


def test_tiny_imagenet_unreadable_jpeg_is_reported_as_corrupt(tmp_path):
    folder = write_tiny_imagenet(tmp_path)
    broken = folder / "val" / "images" / "val_0.JPEG"
    broken.write_bytes(broken.read_bytes()[:40])
    datamodule = TinyImageNetDataModule(data_dir=str(tmp_path), download=False)
    datamodule.setup("test")
    with pytest.raises(DatasetCorruptError) as error:
        datamodule.test_set[0]
    assert str(broken) in one_line(error)


# --- missing and corrupt data -------------------------------------------------------------------
@pytest.mark.parametrize("datamodule_class", ALL_DATAMODULES)
def test_missing_dataset_without_download_is_one_line_naming_the_directory(tmp_path, datamodule_class):
    empty = tmp_path / "empty"
    datamodule = datamodule_class(data_dir=str(empty), download=False)
    for step in (datamodule.prepare_data, datamodule.setup):
        with pytest.raises(DatasetNotFoundError) as error:
            step()
        assert isinstance(error.value, FileNotFoundError)
        assert str(empty) in one_line(error) and "missing" in str(error.value)


@pytest.mark.parametrize("datamodule_class", ALL_DATAMODULES)
def test_failed_download_is_one_line_and_setup_never_downloads(tmp_path, monkeypatch, datamodule_class):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    datamodule = datamodule_class(data_dir=str(tmp_path), download=True)
    with pytest.raises(DatasetNotFoundError) as error:
        datamodule.prepare_data()
    assert "download failed" in one_line(error) and "network is unreachable" in str(error.value)

    def forbidden(*args, **kwargs):
        raise AssertionError("setup must not download")

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    with pytest.raises(DatasetNotFoundError):
        datamodule.setup()


def truncate_payload(path: Path) -> None:
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))


def truncate_gzip_stream(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-30])


def swap_for_labels(path: Path) -> None:
    path.write_bytes((path.parent / "train-labels-idx1-ubyte.gz").read_bytes())


@pytest.mark.parametrize("damage", [truncate_payload, truncate_gzip_stream, swap_for_labels])
def test_corrupt_idx_file_is_one_line_naming_the_file(tmp_path, damage):
    write_fashion_mnist(tmp_path)
    damaged = tmp_path / "train-images-idx3-ubyte.gz"
    damage(damaged)
    datamodule = FashionMNISTDataModule(data_dir=str(tmp_path), download=False)
    datamodule.prepare_data()  # the files are present
    with pytest.raises(DatasetCorruptError) as error:
        datamodule.setup("fit")
    assert str(damaged) in one_line(error)
