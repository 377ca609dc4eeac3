"""Random states in the checkpoint, so that a resumed run draws what the uninterrupted one drew.

Lightning restores weights, optimizer, scheduler and loop counters but not the generators: the
train sampler's shuffle, the augmentations (torch, numpy, Python's ``random``) and hence every
later batch differed after a resume. This callback stores the generators' states with every
checkpoint and puts them back when training starts from one (after the sanity check, right
before the first epoch's batches are drawn). With ``data.num_workers > 0`` each worker keeps
its own generators, which no checkpoint holds: resume is then exact only up to augmentation.
"""

import random

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


def capture() -> dict:
    """The states of every global generator, in types ``torch.load(weights_only=True)`` reads."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()  # noqa: NPY002 (the global one, which libraries draw from)
    version, python_state, python_gauss = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "state": list(python_state), "gauss": python_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore(states: dict) -> None:
    """Put back what :func:`capture` returned."""
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    legacy = (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"],
              numpy["cached_gaussian"])
    np.random.set_state(legacy)  # noqa: NPY002 (the global generator, which libraries draw from)
    python = states["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RandomStateCheckpoint(Callback):
    """Saves the generators' states with each checkpoint and restores them on resume."""

    def __init__(self):
        self.pending: dict | None = None

    def state_dict(self) -> dict:
        """The generators' states (:func:`capture`), saved with the checkpoint."""
        return capture()

    def load_state_dict(self, state_dict: dict) -> None:
        """Keep a checkpoint's states until training starts (:meth:`on_train_start` restores them)."""
        self.pending = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        """Restore the states loaded from a checkpoint, if any, and create the first epoch's train iterator again from them."""
        if self.pending is None:
            return
        restore(self.pending)
        self.pending = None
        # Lightning 2.6 creates the first epoch's train iterator before on_train_start
        # (FitLoop.setup_data), drawing the DataLoader's base seed from the generator before it is
        # restored; an uninterrupted run creates it after its epoch starts. Creating it again here
        # draws from the restored state, as the uninterrupted run did.
        iter(trainer.fit_loop._data_fetcher)
