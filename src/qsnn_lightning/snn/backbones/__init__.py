"""Backbone registry: ``build_model(name, ...)`` builds any registered Q-SNN backbone."""

from functools import partial

from ..layers import LayerFactory
from ..precision import Precision
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
    name: str,
    *,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (3, 32, 32),
    timesteps: int = 2,
    bits: "str | Precision" = "1w2u",
    standardize: str = "layer",
    tau: float = 0.5,
    theta: float = 1.0,
    beta: float = 1.0,
    quantize_before_spike: bool = False,
    neuron: str = "fused",
    compile: bool = False,
) -> SpikingBackbone:
    """Build the backbone ``name`` at precision ``bits`` (e.g. ``"1w2u"``, ``"32w32u"``).

    ``standardize`` is WS-DR's weight standardization (Eq. 14): ``"layer"`` (paper),
    ``"channel"`` (authors' release) or ``"none"`` (plain Q-SNN). ``neuron`` (``"fused"`` or
    ``"reference"``) and ``compile`` choose the LIF implementation (:mod:`qsnn_lightning.snn.neurons`). Raises ValueError with a
    one-line message for an unknown name or a bad setting.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown architecture {name!r}; registered: {', '.join(sorted(BACKBONES))}")
    factory = LayerFactory(
        precision=Precision.parse(bits), standardize=standardize,
        tau=tau, theta=theta, beta=beta, quantize_before_spike=quantize_before_spike, neuron=neuron, compile=compile,
    )
    return BACKBONES[name](factory, num_classes=num_classes, input_shape=tuple(input_shape), timesteps=timesteps)


__all__ = ["BACKBONES", "SpikingBackbone", "build_model"]
