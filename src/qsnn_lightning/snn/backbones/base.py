"""What every backbone shares: direct encoding of static images, per-batch state reset, and the
chain of segments the lean path recomputes (snn/lean.py)."""

import torch
from torch import nn

from ..layers import LayerFactory
from ..lean import ACTIVATION_MEMORY_MODES, lean_blockers, run_segments
from ..neurons import reset_states
from ..segments import Segment


class SpikingBackbone(nn.Module):
    """A Q-SNN backbone mapping inputs to per-step logits ``[T, B, classes]``.

    Inputs are either static images ``[B, C, H, W]`` (direct encoding: the image is presented at
    every one of ``timesteps`` steps) or event frames ``[B, T, C, H, W]`` as the event
    DataModules batch them (frame t is presented at step t, never repeated). Every forward pass
    starts from a cleared membrane state, so batches never share state. The prediction is the
    time mean of the logits.

    A backbone is a chain of :meth:`segments` followed by its :meth:`classify` head.
    ``activation_memory`` (``speed.activation_memory``) chooses how a training step keeps what
    the backward pass needs: ``"full"`` (autograd keeps every layer's tensors) or ``"lean"``
    (each segment keeps its bit-packed input and is recomputed in the backward pass: the same
    gradients, a fraction of the memory); on ``"lean"``, evaluation without autograd runs the
    ``conv-BN-LIF`` chains chunk of time steps by chunk (the same values).
    """

    def __init__(
        self, factory: LayerFactory, timesteps: int, input_shape: tuple[int, int, int], num_classes: int,
        activation_memory: str = "full",
    ):
        super().__init__()
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        if activation_memory not in ACTIVATION_MEMORY_MODES:
            raise ValueError(f"activation_memory must be one of {ACTIVATION_MEMORY_MODES}, got {activation_memory!r}")
        self.activation_memory = activation_memory
        self.precision = factory.precision
        self.input_quant = factory.input_quant()
        self.timesteps = timesteps
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def present(self, x: torch.Tensor) -> torch.Tensor:
        """The 8-bit input (Eq. 8 on the pixels): static images ``[B, C, H, W]`` as they are, event
        frames ``[B, T, C, H, W]`` time-major, ``[T, B, C, H, W]`` (frame t at step t, never repeated)."""
        x = self.input_quant(x)
        if x.dim() == 4:
            return x
        if x.dim() == 5:
            if x.shape[1] != self.timesteps:
                raise ValueError(f"got {x.shape[1]} frames per sample for a model of T = {self.timesteps}")
            return x.transpose(0, 1)
        raise ValueError(f"expected [B, C, H, W] images or [B, T, C, H, W] frames, got shape {tuple(x.shape)}")

    def check_recomputable(self) -> None:
        """Raise ValueError (one line) naming the layers the lean path cannot recompute."""
        blockers = lean_blockers(self)
        if blockers:
            raise ValueError(f"speed.activation_memory=lean cannot recompute {', '.join(blockers)}; "
                             "use speed.activation_memory=full")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step logits ``[T, B, classes]`` from a cleared state; on ``"lean"`` the segments are recomputed in a
        training step, or run chunk of steps by chunk in eval without autograd (:func:`~qsnn_lightning.snn.lean.run_segments`)."""
        reset_states(self)
        training, inference = self.training and torch.is_grad_enabled(), not (self.training or torch.is_grad_enabled())
        lean = self.activation_memory == "lean" and (training or inference)
        x = self.present(x)
        return self.classify(run_segments(self.segments(static=x.dim() == 4), x, lean, training))

    def stem_segment(self, stem: nn.Module, stem_lif: nn.Module, pools: "list[nn.Module]" = (), static: bool = False) -> Segment:
        """The stem conv-BN, its LIF and the ``pools`` after it. A ``static`` image gives the same
        current at every step, so the stem runs once and its output is repeated over T
        (identical to running it T times, BatchNorm statistics included)."""
        if not static:
            return Segment((stem, stem_lif, *pools), input_levels=None)

        def run(image: torch.Tensor) -> torch.Tensor:
            current = stem(image.unsqueeze(0))
            x = stem_lif(current.expand(self.timesteps, *current.shape[1:]))
            for pool in pools:
                x = pool(x)
            return x

        return Segment((stem, stem_lif, *pools), input_levels=None, run=run)

    def segments(self, static: bool = False) -> list[Segment]:
        """The chain from the input (:meth:`present`; ``static``: an image) to the last spiking
        layer's output ``[T, B, ...]``."""
        raise NotImplementedError

    def classify(self, spikes: torch.Tensor) -> torch.Tensor:
        """Per-step logits ``[T, B, classes]`` from the last segment's output."""
        raise NotImplementedError
