"""Every experiment file loads, builds its model and DataModule, and (where its data format is
available) trains for one fast_dev_run batch on small files written in the real format."""

import pytest
from omegaconf import OmegaConf

from dataset_files import (
    write_cifar10,
    write_cifar10_dvs,
    write_cifar100,
    write_dvs_gesture,
    write_fashion_mnist,
    write_tiny_imagenet,
)
from qsnn_lightning.data import EVENT_DATASETS, dataset_info
from qsnn_lightning.data.modules import make_datamodule
from qsnn_lightning.training.build import make_module
from qsnn_lightning.training.config import experiment_names, load_config
from qsnn_lightning.training.train import train

WRITERS = {
    "fashionmnist": lambda root: write_fashion_mnist(root, train=16, test=8),
    "cifar10": lambda root: write_cifar10(root, per_batch=2, test=4),
    "cifar100": lambda root: write_cifar100(root, train=8, test=4),
    "tinyimagenet": lambda root: write_tiny_imagenet(root, per_class=2),
    "dvsgesture": lambda root: write_dvs_gesture(root, labels=(0, 1)),
    "dvscifar10": lambda root: write_cifar10_dvs(root, per_class=10),  # 9 train + 1 test per class
    "nfashionmnist": lambda root: write_fashion_mnist(root, train=16, test=8),
}
# The smallest frames VGGSNN's four poolings take (by arch): the DVS rows run their full model and
# T on them.
SMALL_FRAMES = {"vggsnn": ["data.events.resize=16"]}
EXPERIMENTS = experiment_names()


def test_every_table_1_row_and_fmnist_experiment_exists():
    for dataset in ("cifar10", "cifar100", "tinyimagenet", "dvsgesture", "dvscifar10"):
        for suffix in ("fp", "1w8u", "1w4u", "1w2u"):
            assert f"{dataset}_{suffix}" in EXPERIMENTS
    for name in ("fmnist_fp", "fmnist_1w8u", "fmnist_1w4u", "fmnist_1w2u", "fmnist_1w2u_nowsdr", "nfmnist_fp",
                 "nfmnist_1w2u", "dvsgesture_mcu_1w2u", *FIGURE_5_ABLATIONS):
        assert name in EXPERIMENTS


# Figure 5: WS-DR's two parts switched on one at a time (the fast_dev_run test below runs each).
FIGURE_5_ABLATIONS = {
    "cifar10_1w2u_nowsdr": ("none", 0.0), "cifar10_1w2u_weightonly": ("layer", 0.0), "cifar10_1w2u_spikeonly": ("none", 1e-3),
}


@pytest.mark.parametrize("experiment", FIGURE_5_ABLATIONS)
def test_figure_5_ablations_differ_from_cifar10_1w2u_only_in_ws_dr(experiment):
    cfg, full = load_config(experiment), load_config("cifar10_1w2u")
    assert (cfg.model.standardize, cfg.loss.lam) == FIGURE_5_ABLATIONS[experiment]
    assert (full.model.standardize, full.loss.lam) == ("layer", 1e-3)
    assert without_ws_dr(cfg) == without_ws_dr(full)


def without_ws_dr(cfg) -> dict:
    """The configuration but its name and WS-DR's two settings."""
    values = OmegaConf.to_container(cfg)
    del values["name"], values["model"]["standardize"], values["loss"]["lam"]
    return values


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_builds_model_and_datamodule(experiment, tmp_path):
    cfg = load_config(experiment, [f"data.data_dir={tmp_path}"])
    datamodule = make_datamodule(cfg)
    module = make_module(cfg, datamodule)
    shape = dataset_info(cfg.data.name).input_shape
    if cfg.data.name in EVENT_DATASETS and cfg.data.events.resize:
        shape = (shape[0], cfg.data.events.resize, cfg.data.events.resize)
    assert module.model.input_shape == tuple(datamodule.input_shape) == shape
    assert module.model.timesteps == cfg.model.timesteps
    assert str(module.model.precision) == cfg.model.bits
    assert module.hparams.experiment["name"] == experiment


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(experiment, tmp_path, cifar_without_md5):
    cfg = load_config(experiment)
    data_dir = tmp_path / "data"
    WRITERS[cfg.data.name](data_dir)
    cfg = load_config(experiment, [
        f"data.data_dir={data_dir}", "data.batch_size=2", "data.download=false", "trainer.fast_dev_run=true",
        "trainer.accelerator=cpu", f"run_dir={tmp_path / 'runs'}", "trainer.enable_progress_bar=false",
        *SMALL_FRAMES.get(cfg.model.arch, []),
    ])
    results = train(cfg)
    assert 0.0 <= results["test_acc"] <= 1.0
    assert results["bits"] == cfg.model.bits
    assert (results["test_acc_best_epoch"] is not None) == cfg.test_every_epoch  # the Table 1 protocol's number beside
