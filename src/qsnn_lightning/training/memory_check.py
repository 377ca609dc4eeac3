"""Refuse a training run whose step cannot fit in memory, before anything is written.

A run that needs more memory than the machine has is otherwise killed by the kernel without a
message (exit 137). :func:`check_memory` estimates the memory of one training step at the
configured batch size, compares it with the free memory of the device the run will use and
raises :class:`~qsnn_lightning.errors.MemoryEstimateError` (one line: the estimate, what is
available, the largest batch size that fits) when it does not fit. ``check_memory=false`` in
the experiment configuration skips it.

The estimate, for batch size B and T time steps::

    activations(B, T) = c0 + B (a + b T)          bytes autograd saves for the backward pass
    state             = P (2 + k)                 parameters, gradients, k optimizer copies
                                                  (k = 1 for SGD with momentum, 2 for Adam)
    step(B, T)        = SAFETY (state + activations(B, T) + B input(T)) + OVERHEAD
    need              = N step(B, T) + (N - 1) R  N processes sharing the host (CPU DDP),
                                                  R this process's resident set now

c0 and a + b T come from two forward passes at batch 1 and 2 and the configured T on torch's
fake tensors (shapes and dtypes, no data: no memory, about a second), counting the unique
storages that ``torch.autograd.graph.saved_tensors_hooks`` sees (parameters left out: they are
in ``state``). Fake tensors are torch's private ``torch._subclasses`` (2.14.1); where they cannot
run a model, real zeros at (B, T) = (1, t1), (2, t1), (1, t2), t1 = min(T, 2), t2 = min(T, 4),
give c0, a and b: everything a Q-SNN saves is per time step, except a static image's stem,
which runs once (``c0`` and ``a``).

SAFETY and OVERHEAD cover what the saved tensors do not: the gradients of the activations
during the backward pass, the quantized weights recomputed there, allocator fragmentation, the
Trainer, validation and checkpointing. Calibrated on a 2-core CPU machine (glibc malloc with
``reuse_freed_memory``, ``trainer.fast_dev_run=true``; docs/results.md), peak RSS increase over
the RSS at the check against the raw estimate (state + activations + input)::

    fmnist_1w2u, batch 128                        0.250 GB against 0.075 GB
    dvsgesture_1w4u, 32x32 frames, batch 4        0.630 GB against 0.409 GB   (1.54)
    dvsgesture_1w4u, 64x64 frames, batch 4        1.538 GB against 1.303 GB   (1.18)
    dvsgesture_1w4u, 128x128 frames, batch 2      3.023 GB against 2.497 GB   (1.21)

so increase <= 1.21 raw + 0.22 GB; SAFETY 1.3 and OVERHEAD 256 MiB bound every case. Mixed
precision is estimated at fp32 (an overestimate).

Free memory: ``QSNN_MEMORY_AVAILABLE_BYTES`` when set (for tests, or to leave room for other
jobs), else on CPU ``MemAvailable`` of /proc/meminfo (bounded by a cgroup v2 ``memory.max`` minus
``memory.current``), on CUDA ``torch.cuda.mem_get_info`` of the least free device used.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..errors import MemoryEstimateError

AVAILABLE_ENV = "QSNN_MEMORY_AVAILABLE_BYTES"
SAFETY = 1.3  # calibrated, see the module docstring
OVERHEAD = 256 * 2**20  # bytes: Trainer, loggers, validation loop, checkpoint writing
PROBE_STEPS = (2, 4)  # t1, t2 (capped at T)
GB = 1e9


@dataclass(frozen=True)
class StepEstimate:
    """Bytes of one training step as a function of the batch size (see the module docstring)."""

    state: int  # P (2 + k)
    fixed: int  # c0
    per_sample: int  # a + b T + input(T)
    processes: int = 1  # N
    resident: int = 0  # R

    def raw(self, batch: int) -> int:
        """state + activations + input, before SAFETY and OVERHEAD (one process)."""
        return self.state + self.fixed + batch * self.per_sample

    def need(self, batch: int) -> int:
        step = SAFETY * self.raw(batch) + OVERHEAD
        return int(self.processes * step + (self.processes - 1) * self.resident)

    def largest_batch(self, available: int) -> int:
        """The largest batch size whose ``need`` fits in ``available`` (0 when not even 1 does)."""
        per_process = (available - (self.processes - 1) * self.resident) / self.processes
        room = (per_process - OVERHEAD) / SAFETY - self.state - self.fixed
        if room < self.per_sample:
            return 0
        return int(room // self.per_sample)


def sensible_batch(batch: int) -> int:
    """Rounded down: a power of two below 16, a multiple of 8 from 16 on (at least 1)."""
    if batch >= 16:
        return batch // 8 * 8
    return 1 << (max(batch, 1).bit_length() - 1)


def saved_bytes(module, batch) -> int:
    """Bytes of the unique storages autograd saves in ``module.model_step(batch)`` (forward and
    loss), parameters left out."""
    parameters = {p.untyped_storage()._cdata for p in module.parameters()}
    seen: dict[int, int] = {}
    alive = []  # keeps every saved storage, so that no storage's identity is reused during the pass

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage._cdata not in parameters:
            seen[storage._cdata] = storage.nbytes()
            alive.append(storage)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module.model_step(batch)
    return sum(seen.values())


def optimizer_copies(cfg: DictConfig) -> int:
    """Copies of the parameters the optimizer keeps: SGD 1 with momentum (0 without), Adam 2."""
    if cfg.optim.name == "adam":
        return 2
    return 1 if cfg.optim.momentum > 0 else 0


def probe_batch(datamodule, batch: int, steps: int):
    """Zeros shaped as the DataModule batches them: ``[B, C, H, W]`` images, ``[B, T, C, H, W]`` frames."""
    from ..data import EventDataModule

    shape = tuple(datamodule.input_shape)
    if isinstance(datamodule, EventDataModule):
        shape = (steps, *shape)
    return torch.zeros(batch, *shape), torch.zeros(batch, dtype=torch.long)


def _probe_module(cfg: DictConfig, datamodule, steps: int):
    from .train import make_module

    # eager kernels: compiled ones run on fake tensors read no data and can crash (the run's own
    # kernels save the same tensors for the backward pass)
    probe = OmegaConf.merge(cfg, {"model": {"timesteps": steps}, "speed": {"compile": False}})
    return make_module(probe, datamodule).train()


def fake_saved_bytes(module, datamodule, batch: int, steps: int) -> int:
    """:func:`saved_bytes` on fake tensors (shapes and dtypes, no data): no memory, no arithmetic."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        return saved_bytes(module, probe_batch(datamodule, batch, steps))


def _activations(cfg: DictConfig, datamodule, module) -> tuple[float, float]:
    """``(c0, a + b T)``: the fixed and the per-sample saved bytes of ``module`` (built at the
    configured T)."""
    timesteps = cfg.model.timesteps
    try:
        one, two = (fake_saved_bytes(module, datamodule, batch, timesteps) for batch in (1, 2))
        return max(2 * one - two, 0), two - one
    except Exception:  # an operation fake tensors cannot run: real zeros at small T, scaled
        pass
    t1, t2 = (min(timesteps, t) for t in PROBE_STEPS)
    small = _probe_module(cfg, datamodule, t1)
    measured = {(batch, t1): saved_bytes(small, probe_batch(datamodule, batch, t1)) for batch in (1, 2)}
    if t2 > t1:
        measured[1, t2] = saved_bytes(_probe_module(cfg, datamodule, t2), probe_batch(datamodule, 1, t2))
    per_sample_t1 = max(measured[2, t1] - measured[1, t1], 0)  # a + b t1
    per_step = (measured[1, t2] - measured[1, t1]) / (t2 - t1) if t2 > t1 else 0  # b
    return max(measured[1, t1] - per_sample_t1, 0), per_sample_t1 + max(per_step, 0) * (timesteps - t1)


def estimate_step(cfg: DictConfig, datamodule) -> StepEstimate:
    """The :class:`StepEstimate` of one process training ``cfg`` (probed on the CPU)."""
    module = _probe_module(cfg, datamodule, cfg.model.timesteps)
    state = sum(p.numel() * p.element_size() for p in module.parameters()) * (2 + optimizer_copies(cfg))
    fixed, activations = _activations(cfg, datamodule, module)
    inputs = probe_batch(datamodule, 1, cfg.model.timesteps)[0]
    per_sample = int(activations + inputs.numel() * inputs.element_size() + 8)  # + the int64 label
    return StepEstimate(state=state, fixed=int(fixed), per_sample=per_sample)


# --- where the run goes and what is free there -----------------------------------------------
def training_device(accelerator: str) -> str | None:
    """``"cpu"`` or ``"cuda"`` as Lightning resolves ``trainer.accelerator`` (auto: CUDA when
    available); None for accelerators the check cannot measure (mps, tpu, ...)."""
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    return "cpu" if accelerator == "cpu" else None


def device_count(devices, device: str) -> int:
    """Processes on this machine for ``trainer.devices``: an int, a list of indices, a string of
    either, or auto / -1 (every GPU; one CPU process)."""
    if isinstance(devices, str):
        text = devices.strip()
        if "," in text:
            return len([part for part in text.split(",") if part.strip()])
        devices = int(text) if text.lstrip("-").isdigit() else -1
    if isinstance(devices, int) and devices > 0:
        return devices
    if devices is not None and not isinstance(devices, int):
        return max(len(list(devices)), 1)
    return max(torch.cuda.device_count(), 1) if device == "cuda" else 1


def _meminfo_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_room() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2), None without a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        current = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - current, 0)


def available_bytes(device: str = "cpu", indices: tuple[int, ...] = (0,)) -> int | None:
    """Free memory for the run: ``QSNN_MEMORY_AVAILABLE_BYTES`` when set, else the host's (cpu)
    or the least free of the GPUs ``indices`` (cuda); None when it cannot be read."""
    if os.environ.get(AVAILABLE_ENV):
        return int(float(os.environ[AVAILABLE_ENV]))
    if device == "cuda":
        return min(torch.cuda.mem_get_info(index)[0] for index in indices)
    candidates = [room for room in (_meminfo_bytes("MemAvailable"), _cgroup_room()) if room is not None]
    return min(candidates) if candidates else None


def resident_bytes() -> int:
    """This process's resident set (VmRSS), 0 when unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --- the check -------------------------------------------------------------------------------
def check_memory(cfg: DictConfig, datamodule) -> StepEstimate | None:
    """Raise :class:`MemoryEstimateError` when a training step of ``cfg`` at ``data.batch_size``
    cannot fit in the free memory of its device; return the estimate (None when not measurable)."""
    device = training_device(cfg.trainer.accelerator)
    if device is None:
        return None
    count = device_count(OmegaConf.to_container(cfg.trainer)["devices"], device)
    indices = tuple(range(count)) if device == "cuda" else (0,)
    available = available_bytes(device, indices)
    if available is None:
        return None
    estimate = estimate_step(cfg, datamodule)
    if device == "cpu" and count > 1:  # CPU processes share the host
        estimate = StepEstimate(estimate.state, estimate.fixed, estimate.per_sample, count, resident_bytes())
    batch = cfg.data.batch_size
    need = estimate.need(batch)
    if need <= available:
        return estimate
    where = f"{count} {device} processes" if estimate.processes > 1 else device
    start = (f"{cfg.name} at data.batch_size={batch} needs about {need / GB:.1f} GB for a training step "
             f"but {available / GB:.1f} GB is free ({where})")
    largest = estimate.largest_batch(available)
    if largest >= 1:
        fix = f"data.batch_size={sensible_batch(largest)} fits"
    else:
        lower = "model.timesteps or data.events.resize" if _is_event_data(datamodule) else "model.timesteps"
        fix = f"even data.batch_size=1 needs about {estimate.need(1) / GB:.1f} GB; lower {lower}"
    raise MemoryEstimateError(f"{start}; {fix} (check_memory=false skips this check)")


def _is_event_data(datamodule) -> bool:
    from ..data import EventDataModule

    return isinstance(datamodule, EventDataModule)
