"""What every backbone shares: direct encoding of static images and per-batch state reset."""

import torch
from torch import nn

from ..layers import LayerFactory
from ..neurons import reset_states


class SpikingBackbone(nn.Module):
    """A Q-SNN backbone mapping inputs to per-step logits ``[T, B, classes]``.

    Inputs are either static images ``[B, C, H, W]`` (direct encoding: the image is presented at
    every one of ``timesteps`` steps) or event frames ``[B, T, C, H, W]`` as the event
    DataModules batch them (frame t is presented at step t, never repeated). Every forward pass
    starts from a cleared membrane state, so batches never share state. The prediction is the
    time mean of the logits.
    """

    def __init__(self, factory: LayerFactory, timesteps: int, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        self.precision = factory.precision
        self.input_quant = factory.input_quant()
        self.timesteps = timesteps
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def encode(self, stem: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Input currents of the first spiking layer, ``[T, B, ...]``, from 8-bit input pixels.

        A static image gives the same current at every step, so the stem runs once and its
        output is repeated over T (identical to running it T times, BatchNorm statistics
        included). Event frames ``[B, T, C, H, W]`` are put time-major and each step gets its own.
        """
        x = self.input_quant(x)
        if x.dim() == 4:
            current = stem(x.unsqueeze(0))
            return current.expand(self.timesteps, *current.shape[1:])
        if x.dim() == 5:
            if x.shape[1] != self.timesteps:
                raise ValueError(f"got {x.shape[1]} frames per sample for a model of T = {self.timesteps}")
            return stem(x.transpose(0, 1))
        raise ValueError(f"expected [B, C, H, W] images or [B, T, C, H, W] frames, got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reset_states(self)
        return self.forward_steps(x)

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
