"""Backbone registry: ``build_model(spec, ...)`` builds any registered Q-SNN backbone from a
:class:`~qsnn_lightning.snn.spec.ModelSpec`."""

from functools import partial

import torch

from ..layers import LayerFactory
from ..spec import ModelSpec
from .base import SpikingBackbone
from .resnet19 import ResNet19
from .vgg import DVSMCUNET, FMNISTNET, VGG, VGG16, VGGSNN

BACKBONES = {
    "resnet19": ResNet19,
    "vgg16": partial(VGG, config=VGG16, head="gap"),
    "vggsnn": partial(VGG, config=VGGSNN, head="flatten"),
    "fmnistnet": partial(VGG, config=FMNISTNET, head="flatten"),
    "dvsmcunet": partial(VGG, config=DVSMCUNET, head="flatten"),
}


def build_model(
    spec: ModelSpec,
    *,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (3, 32, 32),
    compile: bool = False,
    channels_last: bool = False,
    activation_memory: str = "full",
) -> SpikingBackbone:
    """Build the backbone ``spec.arch`` at precision ``spec.bits`` (e.g. ``"1w2u"``, ``"32w32u"``)
    with ``spec.timesteps`` steps, for ``num_classes`` classes and ``input_shape`` (C, H, W) inputs.

    ``spec.standardize`` is WS-DR's weight standardization (Eq. 14): ``"layer"`` (paper),
    ``"channel"`` (authors' release) or ``"none"`` (plain Q-SNN); ``spec.neuron`` and the other
    neuron options reach every LIF layer (:mod:`qsnn_lightning.snn.neurons`); ``compile``
    (``speed.compile``) compiles the neuron and binary quantizer kernels; ``channels_last``
    (``speed.channels_last``) stores the conv weights NHWC; ``activation_memory``
    (``speed.activation_memory``: ``"full"`` or ``"lean"``, snn/lean.py) what a training step keeps
    for the backward pass. Raises ValueError with a one-line message for an unknown name, a bad
    setting, or a layer the lean path cannot recompute.
    """
    if spec.arch not in BACKBONES:
        raise ValueError(f"unknown architecture {spec.arch!r}; registered: {', '.join(sorted(BACKBONES))}")
    factory = LayerFactory(spec, compile=compile)
    model = BACKBONES[spec.arch](
        factory, num_classes=num_classes, input_shape=tuple(input_shape), timesteps=spec.timesteps,
        activation_memory=activation_memory,
    )
    if activation_memory == "lean":
        model.check_recomputable()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model

__all__ = ["BACKBONES", "ModelSpec", "SpikingBackbone", "build_model"]
