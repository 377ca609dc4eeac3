"""Neuromorphic Data Augmentation (NDA; Li et al., ECCV 2022, the paper's ref. [28]) on event frames.

Per sample, one geometric transform is drawn at random from roll (up to ``roll`` pixels along
each axis), rotation (up to ``rotate`` degrees) and shear (up to ``shear`` degrees along x), then
a horizontal flip with probability 1/2. The frames of a sample are one ``[T, 2, H, W]`` tensor
and torchvision draws the parameters once per call, so all T frames (and both polarities) move
identically. Evaluation data is never augmented.
"""

from collections.abc import Callable

import torch
from torchvision.transforms import v2


class RandomRoll(torch.nn.Module):
    """Roll the last two dimensions by independent uniform integer shifts in ``[-max_shift, max_shift]``
    (pixels leaving one side re-enter on the other, as in NDA's roll)."""

    def __init__(self, max_shift: int):
        super().__init__()
        self.max_shift = max_shift

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` rolled along H and W by one draw of the two shifts (the same for every frame and polarity)."""
        shifts = torch.randint(-self.max_shift, self.max_shift + 1, (2,)).tolist()
        return torch.roll(frames, shifts=shifts, dims=(-2, -1))

    def extra_repr(self) -> str:
        """``max_shift=<n>`` in the module's repr."""
        return f"max_shift={self.max_shift}"


def neuromorphic_augmentation(roll: int = 5, rotate: float = 30.0, shear: float = 30.0, flip: bool = True) -> Callable:
    """NDA on a ``[T, 2, H, W]`` tensor: one of roll / rotation / shear, then a random horizontal flip.

    A zero amount leaves that transform out of the choice; ``flip=False`` drops the flip.
    """
    choices = []
    if roll > 0:
        choices.append(RandomRoll(roll))
    if rotate > 0:
        choices.append(v2.RandomRotation(rotate))
    if shear > 0:
        choices.append(v2.RandomAffine(degrees=0, shear=shear))
    steps = [v2.RandomChoice(choices)] if choices else []
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps) if steps else torch.nn.Identity()
