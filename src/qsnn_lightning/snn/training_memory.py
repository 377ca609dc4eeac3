"""Memory of one training step on the full and the lean path (``speed.activation_memory``): the
training-time companion of the paper's Table 2 (``qsnn footprint --training``).

    step bytes = parameter bytes x (2 + 1)        weights, gradients, SGD's momentum
               + peak of activations alive at once over forward, WS-DR loss (Eq. 16) and backward

The peak is tracked storage by storage by torch's MemTracker on fake tensors: shapes and dtypes
only, so a step of VGGSNN at batch 64 is measured without using its memory. Gigabytes are 10^9 bytes.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode  # torch-private (2.14.1): shapes and dtypes, no data

from .backbones import build_model
from .footprint import table_lines
from .losses import WSDRLoss
from .neurons import spiking_layers
from .precision import Precision
from .spec import ModelSpec

BYTES_PER_GB = 1e9
SGD_MOMENTUM_COPIES = 1  # the paper's optimizer keeps one copy of the parameters
NOT_ACTIVATIONS = {"Parameter", "Buffer", "Gradient"}

# torch 2.14.1: aten::batch_norm_update_stats (BatchNorm's statistics, layers.batch_statistics) has no
# Meta kernel, so FakeTensorMode ran it on real zeros of the input's full size: 8.6 GB and a minute for
# the estimate of dvsgesture_1w4u at batch 64. Its outputs are the per-channel mean and variance.
_META_KERNELS = torch.library.Library("aten", "IMPL")


def _batch_norm_update_stats_meta(x, running_mean, running_var, momentum):
    """The per-channel ``(mean, var)`` shapes of ``torch.batch_norm_update_stats``."""
    return x.new_empty(x.shape[1]), x.new_empty(x.shape[1])


_META_KERNELS.impl("batch_norm_update_stats", _batch_norm_update_stats_meta, "Meta")


def peak_activation_bytes(step: Callable[[], torch.Tensor], tracked: nn.Module) -> int:
    """The largest total of activations and temporaries alive at once during ``step()`` and the
    backward pass of the loss it returns (``tracked``'s parameters, buffers and gradients left out)."""
    from torch.distributed._tools.mem_tracker import MemTracker  # loads torch.distributed: only when measuring

    tracker = MemTracker()
    tracker.track_external(tracked)
    with tracker:
        step().backward()
    return sum(
        count for device in tracker.get_tracker_snapshot("peak").values() for kind, count in device.items()
        if kind != "Total" and str(getattr(kind, "value", kind)) not in NOT_ACTIVATIONS
    )


def training_step_bytes(model: nn.Module, inputs: torch.Size) -> int:
    """Bytes of one SGD training step of ``model`` on a batch shaped ``inputs`` (module docstring)."""
    loss_fn = WSDRLoss()

    def step() -> torch.Tensor:
        logits = model(torch.zeros(inputs))
        labels = torch.zeros(inputs[0], dtype=torch.long)
        return loss_fn(logits, labels, [lif.firing_rate for lif in spiking_layers(model)]).total

    with FakeTensorMode(allow_non_fake_inputs=True):
        activations = peak_activation_bytes(step, model.train())
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    return parameters * (2 + SGD_MOMENTUM_COPIES) + activations


@dataclass(frozen=True)
class TrainingMemory:
    """One entry of ``qsnn footprint --training``: a training step's gigabytes on the full and the lean path per
    (arch, bits, batch) at T time steps."""

    arch: str
    bits: str
    batch: int
    timesteps: int
    full_gb: float
    lean_gb: float


def training_memory_table(
    archs: list[str], input_shape: tuple[int, int, int], num_classes: int, precisions: list[Precision],
    batches: list[int], timesteps: int, events: bool,
) -> list[TrainingMemory]:
    """One row per (arch, bits, batch): a training step's gigabytes on both paths. ``events``:
    the input is ``[B, T, C, H, W]`` frames (an event dataset), else ``[B, C, H, W]`` images."""
    rows = []
    for arch in archs:
        for precision in precisions:
            spec = ModelSpec(arch=arch, bits=str(precision), timesteps=timesteps)
            models = {mode: build_model(spec, input_shape=input_shape, num_classes=num_classes, activation_memory=mode)
                      for mode in ("full", "lean")}
            for batch in batches:
                shape = torch.Size((batch, *((timesteps,) if events else ()), *input_shape))
                full, lean = (training_step_bytes(models[mode], shape) / BYTES_PER_GB for mode in ("full", "lean"))
                rows.append(TrainingMemory(arch, str(precision), batch, timesteps, full, lean))
    return rows


def format_training_table(rows: list[TrainingMemory]) -> str:
    """Table 2's layout (:func:`~qsnn_lightning.snn.footprint.table_lines`), ``full GB / lean GB``."""
    lines = table_lines(rows, lambda row: f"{row.full_gb:.3g} / {row.lean_gb:.3g}")
    return "\n".join([f"one training step (GB), full / lean path, T = {rows[0].timesteps}", *lines])


def training_rows_as_dicts(rows: list[TrainingMemory]) -> list[dict]:
    """The rows as plain dicts, for JSON output."""
    return [asdict(row) for row in rows]
