"""The torch-only checkpoint reader (qsnn_lightning/checkpoint.py): the backbone it rebuilds is the
QSNNClassifier's, and what it cannot rebuild is one line."""

import inspect

import pytest
import torch

from checkpoint_files import write_untrained_checkpoint
from qsnn_lightning.checkpoint import (
    BACKBONE_ARGUMENTS,
    TRAINING_ARGUMENTS,
    backbone_from_checkpoint,
    non_finite,
    read_checkpoint,
)
from qsnn_lightning.errors import CheckpointError
from qsnn_lightning.training.checkpoint import module_from_checkpoint
from qsnn_lightning.training.module import QSNNClassifier


def test_the_hyperparameters_it_knows_are_the_classifiers_arguments():
    assert {"spec", *BACKBONE_ARGUMENTS, *TRAINING_ARGUMENTS} == set(inspect.signature(QSNNClassifier).parameters)


def test_the_backbone_equals_the_classifiers_model(tmp_path):
    checkpoint = read_checkpoint(str(write_untrained_checkpoint(tmp_path)[0]))
    backbone, spec = backbone_from_checkpoint(checkpoint)
    module = module_from_checkpoint(checkpoint)
    assert spec == module.spec and type(backbone) is type(module.model)
    state, expected = backbone.state_dict(), module.model.state_dict()
    assert list(state) == list(expected) and all(torch.equal(state[key], expected[key]) for key in state)
    images = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(backbone.eval()(images), module.model.eval()(images))


def one_line_error(checkpoint: dict, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as error:
        backbone_from_checkpoint(checkpoint)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_weights_that_do_not_fit_are_one_line(tmp_path):
    checkpoint = read_checkpoint(str(write_untrained_checkpoint(tmp_path)[0]))
    name = next(key for key in checkpoint["state_dict"] if key.endswith("weight"))
    checkpoint["state_dict"][name] = torch.zeros(3)
    message = one_line_error(checkpoint, "weights do not fit its architecture in this version")
    assert name.removeprefix("model.") in message
    with pytest.raises(CheckpointError, match="weights do not fit"):
        module_from_checkpoint(checkpoint)
    del checkpoint["state_dict"][name]
    one_line_error(checkpoint, "weights do not fit its architecture")


def test_settings_this_version_cannot_build_are_one_line(tmp_path):
    checkpoint = read_checkpoint(str(write_untrained_checkpoint(tmp_path)[0]))
    checkpoint["hyper_parameters"]["membrane_leak"] = 0.1
    assert "membrane_leak" in one_line_error(checkpoint, "model settings cannot be built by this version")
    del checkpoint["hyper_parameters"]["membrane_leak"]
    checkpoint["hyper_parameters"]["spec"]["arch"] = "vgg99"
    assert "vgg99" in one_line_error(checkpoint, "model settings cannot be built by this version")


def test_non_finite_names_the_first_tensor_and_counts_its_values():
    tensors = {"a": torch.zeros(3), "steps": torch.tensor(5), "b": torch.tensor([1.0, float("nan"), float("inf"), float("nan")])}
    assert non_finite(tensors) == "'b' holds 2 NaN and 1 infinite of 4 values"
    tensors["b"] = torch.ones(4)
    assert non_finite(tensors) is None
