"""The model spec: the config's ``model`` section is one typed value that reaches every builder and
every LIF layer, and the LightningModule stores it once."""

from dataclasses import fields
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from qsnn_lightning.snn.backbones import build_model
from qsnn_lightning.snn.neurons import spiking_layers
from qsnn_lightning.snn.quant import BinaryWeight
from qsnn_lightning.snn.spec import ModelSpec, NeuronOptions, NeuronSpec
from qsnn_lightning.training.build import make_module
from qsnn_lightning.training.config import ModelConfig, _choices, load_config
from qsnn_lightning.training.module import QSNNClassifier

FMNIST = SimpleNamespace(num_classes=10, input_shape=(1, 28, 28))  # what make_module reads of a DataModule


def other_value(name: str, default):
    """A valid value other than the default, by type (choices from the config's validation)."""
    if isinstance(default, bool):
        return not default
    if isinstance(default, float):
        return default / 2
    allowed = _choices()[f"model.{name}"]
    return next(value for value in allowed if value != default)


def test_the_config_schema_is_the_spec():
    assert ModelConfig is ModelSpec
    cfg = load_config("fmnist_1w2u", ["model.bits=1w4u", "model.timesteps=3"])
    spec = OmegaConf.to_object(cfg.model)
    assert spec == ModelSpec(arch="fmnistnet", bits="1w4u", timesteps=3, standardize=cfg.model.standardize,
                             membrane_scale=cfg.model.membrane_scale, ste_window=cfg.model.ste_window)
    assert [field.name for field in fields(ModelSpec)][:4] == ["arch", "bits", "timesteps", "standardize"]


def test_every_neuron_option_reaches_every_lif_layer_from_the_config():
    """Every field of NeuronOptions (a new one included, with no other edit) goes config ->
    QSNNClassifier -> build_model -> LayerFactory -> LIF as part of one value."""
    overrides = {field.name: other_value(field.name, field.default) for field in fields(NeuronOptions)}
    cfg = load_config("fmnist_1w2u", [f"model.{name}={value}" for name, value in overrides.items()] + ["speed.compile=true"])
    module = make_module(cfg, FMNIST)
    assert module.spec == OmegaConf.to_object(cfg.model)
    expected = NeuronSpec(**overrides, membrane_bits=2, compile=True)
    layers = spiking_layers(module.model)
    assert len(layers) == 4 and all(layer.spec == expected for layer in layers)
    for name, value in overrides.items():  # the fields read as layer attributes too
        assert all(getattr(layer, name) == value for layer in layers)


def test_hyperparameters_hold_the_spec_once_as_plain_values():
    spec = ModelSpec(arch="fmnistnet", bits="1w8u", theta=0.75)
    module = QSNNClassifier(spec, num_classes=10, input_shape=(1, 28, 28))
    assert module.hparams.spec == spec.to_dict() and type(module.hparams.spec) is dict
    assert module.hparams_initial.spec == spec.to_dict()
    assert not {field.name for field in fields(ModelSpec)} & (set(module.hparams) - {"spec"})
    rebuilt = QSNNClassifier(**module.hparams)  # as a checkpoint rebuilds it
    assert rebuilt.spec == spec and rebuilt.hparams == module.hparams


def test_build_model_reads_the_spec():
    spec = ModelSpec(arch="dvsmcunet", bits="1w4u", timesteps=5, standardize="channel", tau=0.25, ste_window=2.5)
    model = build_model(spec, num_classes=11, input_shape=(2, 32, 32))
    assert (model.timesteps, str(model.precision), model.num_classes) == (5, "1w4u", 11)
    assert {layer.spec for layer in spiking_layers(model)} == {spec.neuron_spec()}
    binary = [module for module in model.modules() if isinstance(module, BinaryWeight)]
    assert len(binary) == 3 and {(quant.standardize, quant.ste_window) for quant in binary} == {("channel", 2.5)}


def test_unknown_options_are_named():
    with pytest.raises(ValueError, match="unknown model option.*membrane_leak"):
        ModelSpec.from_dict({"arch": "fmnistnet", "membrane_leak": 0.1})
    with pytest.raises(TypeError):
        NeuronSpec(0.5)  # keyword-only: fields are named where a spec is written
