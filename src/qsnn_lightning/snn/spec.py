"""The model as one typed value: :class:`ModelSpec` (what a config's ``model`` section says) and
:class:`NeuronSpec` (what one LIF layer needs).

``ModelSpec`` travels unchanged from the configuration (it *is* the schema of ``model``:
``training/config.py`` uses it as ``ModelConfig``) to ``QSNNClassifier`` (stored once in the
checkpoint, as a plain dict under ``hyper_parameters["spec"]``), to :func:`~qsnn_lightning.snn.backbones.build_model`
and :class:`~qsnn_lightning.snn.layers.LayerFactory`, which gives every LIF layer the
``NeuronSpec`` of :meth:`ModelSpec.neuron_spec`.

The neuron options a config sets are declared once, in :class:`NeuronOptions`; both specs
inherit them. Adding a neuron option is one field there plus the code that reads it
(``lif.spec.<name>``, also readable as ``lif.<name>``); the config key ``model.<name>``, the
checkpoint and every builder carry it without further edits.

``speed.compile`` and ``speed.channels_last`` are not part of ``ModelSpec``: they choose how the
same network executes (identical numerics), so a checkpoint trained with them evaluates without
them, and the config keeps them in its ``speed`` section. ``compile`` reaches the neurons inside
their ``NeuronSpec`` (it picks the compiled kernels) and the binary weight quantizer through
``LayerFactory``; ``channels_last`` is a memory format the LightningModule applies.

Only the standard library and this package's torch-only modules are used here (no config or
training imports).
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .precision import Precision
from .quant import FULL_PRECISION_BITS


@dataclass(frozen=True, kw_only=True)
class NeuronOptions:
    """The LIF options of a model, shared by every spiking layer (config keys ``model.<name>``)."""

    tau: float = 0.5  # membrane decay of Eq. 1 (u[t] = tau v[t-1] + x[t])
    theta: float = 1.0  # firing threshold of Eq. 2
    beta: float = 1.0  # width of the triangle surrogate gradient (Eq. 5)
    membrane_scale: str = "max"  # alpha_u of Eq. 8: max (paper) | tanh (release) | threshold | learned (snn/quant.py)
    quantize_before_spike: bool = False  # Algorithm 1's order (quantize, then fire): ablation only
    neuron: str = "fused"  # fused (one autograd node over T) | reference (the plain loop it is tested against)


@dataclass(frozen=True, kw_only=True)
class NeuronSpec(NeuronOptions):
    """Everything one :class:`~qsnn_lightning.snn.neurons.LIF` layer is built from."""

    membrane_bits: int = FULL_PRECISION_BITS  # k of Eq. 8-10; 32: the membrane stays in floating point
    compile: bool = False  # fused path: run its step functions through torch.compile (speed only)


@dataclass(frozen=True, kw_only=True)
class BackboneOptions:
    """The options of a model that are not the neuron's (config keys ``model.<name>``)."""

    arch: str = "fmnistnet"  # a registered backbone (snn/backbones)
    bits: str = "1w2u"  # <W>w<K>u: weight bits of hidden layers, membrane bits k (snn/precision.py)
    timesteps: int = 2  # T
    standardize: str = "layer"  # WS-DR weight standardization (Eq. 14): layer | channel | none
    ste_window: float = 1.0  # binary weights: sign's gradient passes where |w_hat| < ste_window (1: hardtanh's, snn/quant.py)
    input_bits: int | None = None  # input pixels: 8 (int8, what the export reads) | 32 (off); None: 8 for quantized weights, else 32


@dataclass(frozen=True, kw_only=True)
class ModelSpec(NeuronOptions, BackboneOptions):
    """A Q-SNN model: backbone, bit widths, time steps, WS-DR standardization and neuron options
    (fields in that order: arch, bits, timesteps, standardize, tau, theta, beta, ...).

    Values are checked where they are used (:func:`~qsnn_lightning.snn.backbones.build_model`
    raises ValueError with one line) and, for configurations, by ``training/config.py``.
    """

    @property
    def precision(self) -> Precision:
        """``bits`` parsed (:meth:`Precision.parse`, which raises ValueError on a malformed value)."""
        return Precision.parse(self.bits)

    def neuron_spec(self, compile: bool = False) -> NeuronSpec:
        """The spec of this model's LIF layers; ``compile`` is ``speed.compile``."""
        options = {field.name: getattr(self, field.name) for field in fields(NeuronOptions)}
        return NeuronSpec(**options, membrane_bits=self.precision.membrane_bits, compile=compile)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only, as checkpoints store it (they are read with ``weights_only=True``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelSpec":
        """The inverse of :meth:`to_dict`; raises ValueError naming any unknown key."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def coerce(cls, spec: "ModelSpec | Mapping[str, Any]") -> "ModelSpec":
        """A ``ModelSpec`` from itself or from its dict (as a checkpoint holds it)."""
        return spec if isinstance(spec, cls) else cls.from_dict(spec)
