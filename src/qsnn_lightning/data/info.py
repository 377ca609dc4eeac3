"""What the model needs to know about each dataset: input shape (C, H, W) and class count."""

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's input shape ``(C, H, W)`` as the model sees it, and its number of classes."""

    input_shape: tuple[int, int, int]
    num_classes: int


DATASETS = {
    "fashionmnist": DatasetInfo((1, 28, 28), 10),
    "cifar10": DatasetInfo((3, 32, 32), 10),
    "cifar100": DatasetInfo((3, 32, 32), 100),
    "tinyimagenet": DatasetInfo((3, 64, 64), 200),
    "dvsgesture": DatasetInfo((2, 128, 128), 11),
    "dvscifar10": DatasetInfo((2, 48, 48), 10),  # 128x128 events resized to 48x48 as in TET
    "nfashionmnist": DatasetInfo((2, 34, 34), 10),  # Fashion-MNIST through a simulated event camera
}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of dataset ``name``; raises ValueError listing the known names."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]
