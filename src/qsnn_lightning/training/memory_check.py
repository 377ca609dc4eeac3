"""Refuse a training run whose step cannot fit in memory, before anything is written, and choose
what a step keeps for the backward pass (``speed.activation_memory``).

A run that needs more memory than the machine has is otherwise killed by the kernel without a
message (exit 137). :func:`check_memory` estimates the memory of one training step at the
configured batch size, compares it with the free memory of the device the run will use and
raises :class:`~qsnn_lightning.errors.MemoryEstimateError` (one line: the estimate, what is
available, the largest batch size that fits) when it does not fit. ``check_memory=false`` in
the experiment configuration skips it. With ``speed.activation_memory=auto`` it estimates both
paths (snn/lean.py) and chooses ``full`` where it fits, else ``lean``.

The estimate, for batch size B and T time steps::

    activations(B, T) = c0 + B (a + b T)          the peak of the tensors alive in a step
    state             = P (2 + k)                 parameters, gradients, k optimizer copies
                                                  (k = 1 for SGD with momentum, 2 for Adam)
    step(B, T)        = SAFETY (state + activations(B, T) + B input(T)) + OVERHEAD
    need              = N step(B, T) + (N - 1) R  N processes sharing the host (CPU DDP),
                                                  R this process's resident set now

c0 and a + b T come from two training steps (forward, loss, backward) at the configured T on
torch's fake tensors (shapes and dtypes, no data: no memory, seconds; about 20 s for
dvsgesture_1w4u at batch 64), tracked tensor by tensor by torch's ``MemTracker``: the largest
total of the activations and temporaries alive at once, wherever in the step it falls
(parameters, buffers and gradients left out: they are in ``state``). For the full path that
peak is about what autograd saves and grows in proportion to the batch (steps at batch 1 and
2); for the lean path it is the backward pass of its largest block, whose chunks of time steps
depend on the batch (steps at batch 1 and the configured batch). Fake tensors and MemTracker
are torch's private ``torch._subclasses`` and ``torch.distributed._tools`` (2.14.1); where fake
tensors cannot run a model, the same peak on real zeros at (B, T) = (1, t1), (2, t1), (1, t2),
t1 = min(T, 2), t2 = min(T, 4), gives c0, a and b: what a Q-SNN holds grows with T, except a
static image's stem, which runs once (``c0`` and ``a``).

SAFETY and OVERHEAD cover what the tracked tensors do not: allocator fragmentation, the
convolution library's workspaces, the Trainer, validation and checkpointing. Calibrated on a
2-core CPU machine (glibc malloc with ``reuse_freed_memory``), peak RSS increase of two SGD
steps of dvsgesture_1w4u (VGGSNN, 2x128x128, T = 16) in a fresh process against the raw
estimate (state + activations + input; ``python benchmarks/activation_memory.py``,
docs/results.md)::

    batch 2, full   2.63 GB against 2.23 GB (1.18)     lean   1.55 GB against 1.10 GB (1.40)
    batch 8, full   9.12 GB against 8.59 GB (1.06)     lean   2.72 GB against 2.46 GB (1.11)

so SAFETY 1.2 and OVERHEAD 384 MiB bound every case. Two later runs (huge pages, batch 2, 4 and
8, today's lean path) put that need 12-40% above their peaks; with OVERHEAD 192 MiB it lies 4-24%
above every peak of both (docs/results.md, "Memory preflight calibration").

Free memory: ``QSNN_MEMORY_AVAILABLE_BYTES`` when set (for tests, or to leave room for other
jobs), else on CPU ``MemAvailable`` of /proc/meminfo (bounded by a cgroup v2 ``memory.max`` minus
``memory.current``), on CUDA ``torch.cuda.mem_get_info`` of the least free device used.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch._subclasses.fake_tensor import FakeTensorMode  # private in torch 2.14.1, as snn/training_memory.py says

from ..data import EventData
from ..errors import ConfigError, MemoryEstimateError
from ..snn.lean import lean_blockers
from ..snn.training_memory import peak_activation_bytes
from .build import make_module

AVAILABLE_ENV = "QSNN_MEMORY_AVAILABLE_BYTES"
SAFETY = 1.2  # calibrated, see the module docstring
OVERHEAD = 192 * 2**20  # bytes: Trainer, loggers, validation loop, checkpoint writing, conv workspaces
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
        """Bytes a step at ``batch`` needs: N processes' SAFETY-scaled steps plus the others' resident sets."""
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


def peak_bytes(module, batch) -> int:
    """The largest total of activations and temporaries alive at once during
    ``module.model_step(batch)`` and its backward pass (parameters, buffers and gradients left
    out), tracked storage by storage by torch's MemTracker."""
    return peak_activation_bytes(lambda: module.model_step(batch)[0].total, module)


def optimizer_copies(cfg: DictConfig) -> int:
    """Copies of the parameters the optimizer keeps: SGD 1 with momentum (0 without), Adam 2."""
    if cfg.optim.name == "adam":
        return 2
    return 1 if cfg.optim.momentum > 0 else 0


def probe_batch(datamodule, batch: int, steps: int):
    """Zeros shaped as the DataModule batches them: ``[B, C, H, W]`` images, ``[B, T, C, H, W]`` frames."""
    shape = tuple(datamodule.input_shape)
    if isinstance(datamodule, EventData):
        shape = (steps, *shape)
    return torch.zeros(batch, *shape), torch.zeros(batch, dtype=torch.long)


def _probe_module(cfg: DictConfig, datamodule, steps: int, activation_memory: str = "full"):
    # eager kernels: compiled ones run on fake tensors read no data and can crash (the run's own
    # kernels save the same tensors for the backward pass)
    probe = OmegaConf.merge(cfg, {"model": {"timesteps": steps}, "speed": {"compile": False}})
    return make_module(probe, datamodule, activation_memory).train()


def fake_peak_bytes(module, datamodule, batch: int, steps: int) -> int:
    """:func:`peak_bytes` on fake tensors (shapes and dtypes, no data): no memory, no arithmetic."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        return peak_bytes(module, probe_batch(datamodule, batch, steps))


def _activations(cfg: DictConfig, datamodule, module, activation_memory: str) -> tuple[float, float]:
    """``(c0, a + b T)``: the fixed and the per-sample bytes of ``module`` (built at the
    configured T) in a training step: the line through its peaks at batch 1 and 2 (full path),
    or 1 and the configured batch (lean path: its chunks of steps and what it keeps between its
    backward passes depend on the batch, so only the peak at that batch is exact)."""
    timesteps, batch = cfg.model.timesteps, cfg.data.batch_size
    other = max(batch, 2) if activation_memory == "lean" else 2
    try:
        one, peak = (fake_peak_bytes(module, datamodule, size, timesteps) for size in (1, other))
        per_sample = (peak - one) / (other - 1)
        return max(one - per_sample, 0), per_sample
    except Exception:  # an operation fake tensors cannot run: real zeros at small T, scaled
        pass
    t1, t2 = (min(timesteps, t) for t in PROBE_STEPS)
    small = _probe_module(cfg, datamodule, t1, activation_memory)
    measured = {(batch, t1): peak_bytes(small, probe_batch(datamodule, batch, t1)) for batch in (1, 2)}
    if t2 > t1:
        measured[1, t2] = peak_bytes(_probe_module(cfg, datamodule, t2, activation_memory), probe_batch(datamodule, 1, t2))
    per_sample_t1 = max(measured[2, t1] - measured[1, t1], 0)  # a + b t1
    per_step = (measured[1, t2] - measured[1, t1]) / (t2 - t1) if t2 > t1 else 0  # b
    return max(measured[1, t1] - per_sample_t1, 0), per_sample_t1 + max(per_step, 0) * (timesteps - t1)


def estimate_step(cfg: DictConfig, datamodule, activation_memory: str = "full") -> StepEstimate:
    """The :class:`StepEstimate` of one process training ``cfg`` with ``activation_memory``
    (``"full"`` or ``"lean"``; probed on the CPU)."""
    module = _probe_module(cfg, datamodule, cfg.model.timesteps, activation_memory)
    state = sum(p.numel() * p.element_size() for p in module.parameters()) * (2 + optimizer_copies(cfg))
    fixed, activations = _activations(cfg, datamodule, module, activation_memory)
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
def choose_activation_memory(cfg: DictConfig, datamodule) -> tuple[str, "str | None"]:
    """``(path, why)``: the path a run of ``cfg`` trains with, ``"full"`` or ``"lean"``, from
    ``speed.activation_memory``, and for ``auto`` the line the run logs to say which and why:
    ``auto`` takes the full path where it fits and the lean one where only that fits
    (:func:`check_memory`; with ``check_memory=false`` nothing is estimated and auto keeps the
    full path). Raises ConfigError (one line) for ``lean`` on a model it cannot recompute,
    :class:`MemoryEstimateError` when no allowed path fits."""
    requested = cfg.speed.activation_memory
    blockers = _lean_blockers(cfg, datamodule)
    if requested == "lean" and blockers:
        raise ConfigError(f"speed.activation_memory=lean cannot recompute {blockers[0]}; use speed.activation_memory=full")
    if requested != "auto":
        return (check_memory(cfg, datamodule, [requested]) if cfg.check_memory else requested), None
    if blockers:
        full = check_memory(cfg, datamodule, ["full"]) if cfg.check_memory else "full"
        return full, f"speed.activation_memory=auto: full (the lean path cannot recompute {blockers[0]})"
    if not cfg.check_memory:
        return "full", "speed.activation_memory=auto: full (check_memory=false: nothing was estimated)"
    needs: dict = {}
    mode = check_memory(cfg, datamodule, ["full", "lean"], needs)
    return mode, _choice_line(mode, needs)


def _lean_blockers(cfg: DictConfig, datamodule) -> list[str]:
    return lean_blockers(_probe_module(cfg, datamodule, 1).model)


def check_memory(cfg: DictConfig, datamodule, modes: "list[str]" = ("full",), needs: "dict | None" = None) -> str:
    """The first of ``modes`` (``"full"``, ``"lean"``) whose training step of ``cfg`` at
    ``data.batch_size`` fits in the free memory of its device (the first when that cannot be
    measured); raise :class:`MemoryEstimateError` when none does. ``needs`` (a dict) gets the
    bytes each mode tried needs and ``"available"``."""
    needs = {} if needs is None else needs
    device = training_device(cfg.trainer.accelerator)
    count = device_count(OmegaConf.to_container(cfg.trainer)["devices"], device) if device else 1
    available = available_bytes(device, tuple(range(count)) if device == "cuda" else (0,)) if device else None
    if available is None:
        return modes[0]
    batch, estimates = cfg.data.batch_size, {}
    needs["available"] = available
    for mode in modes:
        estimate = estimate_step(cfg, datamodule, mode)
        if device == "cpu" and count > 1:  # CPU processes share the host
            estimate = StepEstimate(estimate.state, estimate.fixed, estimate.per_sample, count, resident_bytes())
        needs[mode], estimates[mode] = estimate.need(batch), estimate
        if needs[mode] <= available:
            return mode
    where = f"{count} {device} processes" if count > 1 and device == "cpu" else device
    paths = "; speed.activation_memory=lean needs about {:.1f} GB".format(needs["lean"] / GB) if len(modes) > 1 else ""
    start = (f"{cfg.name} at data.batch_size={batch} needs about {needs[modes[0]] / GB:.1f} GB for a training step"
             f"{paths} but {available / GB:.1f} GB is free ({where})")
    best = max(modes, key=lambda mode: (estimates[mode].largest_batch(available), -estimates[mode].need(1)))
    largest = estimates[best].largest_batch(available)
    if largest >= 1:
        fix = f"data.batch_size={sensible_batch(largest)} fits" + (f" with speed.activation_memory={best}" if best != modes[0] else "")
    else:
        lower = "model.timesteps or data.events.resize" if _is_event_data(datamodule) else "model.timesteps"
        fix = f"even data.batch_size=1 needs about {estimates[best].need(1) / GB:.1f} GB; lower {lower}"
    raise MemoryEstimateError(f"{start}; {fix} (check_memory=false skips this check)")


def _choice_line(mode: str, needs: dict) -> str:
    """The log line of ``auto``'s choice: the path and why."""
    if "full" not in needs:
        return f"speed.activation_memory=auto: {mode} (the free memory could not be measured)"
    available = needs["available"]
    full = f"the full path needs about {needs['full'] / GB:.1f} GB"
    if mode == "full":
        return f"speed.activation_memory=auto: full ({full}, {available / GB:.1f} GB is free)"
    return (f"speed.activation_memory=auto: lean ({full} but {available / GB:.1f} GB is free; the lean path, "
            f"the same gradients, needs about {needs['lean'] / GB:.1f} GB)")


def _is_event_data(datamodule) -> bool:
    return isinstance(datamodule, EventData)
