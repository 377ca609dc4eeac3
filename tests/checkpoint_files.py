"""A checkpoint written without training, shared by the tests of the checkpoint reader and the layout."""

from pathlib import Path

import torch

from dataset_files import write_fashion_mnist
from qsnn_lightning.data import make_data
from qsnn_lightning.training.build import make_module
from qsnn_lightning.training.config import load_config


def write_untrained_checkpoint(directory: Path) -> tuple[Path, Path]:
    """``(checkpoint path, data folder)``: a fmnist_1w2u checkpoint shaped as Lightning writes it
    (``hyper_parameters``, ``state_dict``), made without training: the QSNNClassifier built as a
    run builds it, its BatchNorm statistics and input and membrane scales set by two forward
    passes in training mode; its saved configuration reads tiny Fashion-MNIST files (idx format)
    in ``directory / "data"``."""
    data = write_fashion_mnist(directory / "data", train=8, test=6)
    cfg = load_config("fmnist_1w2u", [f"data.data_dir={data}", "data.download=false"])
    torch.manual_seed(0)
    module = make_module(cfg, make_data(cfg))
    with torch.no_grad():
        for _ in range(2):
            module.model(torch.randn(4, 1, 28, 28))
    path = directory / "untrained.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path, data
