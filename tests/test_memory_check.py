"""The memory check of ``qsnn train``: the estimate against hand counts and a measured peak, and the
one-line refusal (exit 2, no run directory) when a step cannot fit in the free memory."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from dataset_files import write_dvs_gesture, write_fashion_mnist
from qsnn_lightning.data import make_datamodule
from qsnn_lightning.errors import MemoryEstimateError
from qsnn_lightning.training import memory_check
from qsnn_lightning.training.config import load_config
from qsnn_lightning.training.memory_check import (
    AVAILABLE_ENV,
    StepEstimate,
    device_count,
    estimate_step,
    fake_saved_bytes,
    probe_batch,
    saved_bytes,
    sensible_batch,
    training_device,
)
from qsnn_lightning.training.train import make_module, train

QSNN = str(Path(sys.executable).with_name("qsnn"))
QUIET = ["data.download=false", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


class TinyStep(nn.Module):
    """``relu(x W)`` summed: autograd keeps x (for dL/dW) and the relu output, W is a parameter."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4, 3))

    def model_step(self, batch):
        x, _ = batch
        hidden = torch.relu(x @ self.weight)
        return (hidden * hidden.bool()).sum()  # bool() saves nothing; hidden * mask saves the mask (1 byte each)


def test_saved_bytes_hand_counted():
    module = TinyStep()
    batch = (torch.randn(5, 4), None)
    # x: 5*4 float32 = 80; relu output: 5*3*4 = 60, saved by relu and by the product (counted once);
    # the bool mask: 15; the weight is a parameter and left out
    assert saved_bytes(module, batch) == 80 + 60 + 15
    assert fake_saved_bytes(module, type("Data", (), {"input_shape": (4,)})(), 5, 1) == 80 + 60 + 15


def test_fake_tensors_count_what_a_real_forward_saves_and_the_line_in_b_is_exact():
    cfg = load_config("dvsgesture_1w4u", ["data.events.resize=16", "model.timesteps=4"])
    datamodule = make_datamodule(cfg)
    module = make_module(cfg, datamodule).train()
    real = saved_bytes(module, probe_batch(datamodule, 3, 4))
    assert fake_saved_bytes(module, datamodule, 3, 4) == real
    estimate = estimate_step(cfg, datamodule)
    frames = 3 * 4 * 2 * 16 * 16 * 4 + 3 * 8  # the input batch and its labels
    assert estimate.fixed + 3 * estimate.per_sample == real + frames
    parameters = sum(p.numel() * 4 for p in module.parameters())
    assert estimate.state == parameters * 3  # weights, gradients, SGD momentum


def test_the_probe_runs_eager_kernels_when_the_run_compiles_them():
    """Compiled kernels called on fake tensors crashed the process (a segmentation fault in
    qsnn train fmnist_fp speed.compile=true): the probe model is built without them."""
    cfg = load_config("fmnist_fp", ["speed.compile=true"])
    probe = memory_check._probe_module(cfg, make_datamodule(cfg), 2)
    lifs = [m for m in probe.modules() if hasattr(m, "spec") and hasattr(m.spec, "compile")]
    assert lifs and not any(lif.spec.compile for lif in lifs)


def test_small_T_probes_scale_to_the_real_T_as_the_real_forward(monkeypatch):
    """The fallback (real zeros at T = 2 and 4 when fake tensors fail) extrapolates exactly."""
    cfg = load_config("dvsgesture_1w4u", ["data.events.resize=16", "model.timesteps=8"])
    datamodule = make_datamodule(cfg)
    exact = estimate_step(cfg, datamodule)

    def unavailable(*args):
        raise RuntimeError("no fake tensors")

    monkeypatch.setattr(memory_check, "fake_saved_bytes", unavailable)
    scaled = estimate_step(cfg, datamodule)
    assert scaled.fixed + 5 * scaled.per_sample == pytest.approx(exact.fixed + 5 * exact.per_sample, rel=1e-4)


MEASURE_STEP = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from qsnn_lightning.data import make_datamodule
    from qsnn_lightning.training.config import load_config
    from qsnn_lightning.training.memory_check import estimate_step, probe_batch, resident_bytes
    from qsnn_lightning.training.host_memory import reuse_freed_memory
    from qsnn_lightning.training.train import make_module
    reuse_freed_memory()  # as qsnn train does (speed.reuse_freed_memory), which the calibration assumed
    torch.set_num_threads(1)  # one malloc arena: the peak must not depend on how busy the machine is
    cfg = load_config("dvsgesture_1w4u", ["data.events.resize=32", "model.timesteps=8", "data.batch_size=4"])
    datamodule = make_datamodule(cfg)
    estimate = estimate_step(cfg, datamodule)
    module = make_module(cfg, datamodule).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current; ru_maxrss would keep the parent's peak
    before = resident_bytes()
    for _ in range(2):
        parts, _, _ = module.model_step(probe_batch(datamodule, 4, 8))
        parts.total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    status = Path("/proc/self/status").read_text().splitlines()
    peak = int(next(line.split()[1] for line in status if line.startswith("VmHWM:"))) * 1024  # kB
    print(peak - before, estimate.raw(4), estimate.need(4))
""")


def test_estimate_bounds_the_measured_peak_of_a_training_step():
    """Two SGD steps of VGGSNN (32x32, T = 8, batch 4) in a fresh process: the peak RSS increase
    lies between the raw estimate / 2 and the estimate with SAFETY and OVERHEAD."""
    result = subprocess.run([sys.executable, "-c", MEASURE_STEP], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr[-2000:]
    increase, raw, need = map(int, result.stdout.split())
    assert raw / 2 < increase <= need, (increase, raw, need)


def test_sensible_batch_sizes_and_largest_batch_agree_with_need():
    assert [sensible_batch(b) for b in (0, 1, 2, 3, 7, 8, 15, 16, 23, 100)] == [1, 1, 2, 2, 4, 8, 8, 16, 16, 96]
    for estimate in (StepEstimate(10**8, 10**6, 3 * 10**7), StepEstimate(10**8, 0, 10**7, processes=3, resident=2 * 10**8)):
        for available in (2 * 10**9, 7 * 10**9):
            largest = estimate.largest_batch(available)
            assert largest >= 1 and estimate.need(largest) <= available < estimate.need(largest + 1)
    assert StepEstimate(10**8, 0, 10**9).largest_batch(10**8) == 0
    shared = StepEstimate(10**8, 0, 10**7, processes=2, resident=10**9)
    assert shared.need(8) == 2 * StepEstimate(10**8, 0, 10**7).need(8) + 10**9


def test_device_and_process_count_as_lightning_resolves_them():
    assert training_device("cpu") == "cpu" and training_device("gpu") == training_device("cuda") == "cuda"
    assert training_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert training_device("mps") is None
    assert device_count(2, "cpu") == 2 and device_count("3", "cpu") == 3 and device_count([0, 2], "cuda") == 2
    assert device_count("0,1", "cuda") == 2 and device_count("auto", "cpu") == 1 and device_count(-1, "cpu") == 1


def test_available_memory_reads_the_environment_then_the_host(monkeypatch):
    monkeypatch.setenv(AVAILABLE_ENV, "123456789")
    assert memory_check.available_bytes("cpu") == 123456789
    monkeypatch.delenv(AVAILABLE_ENV)
    host = memory_check.available_bytes("cpu")
    assert host is not None and 0 < host <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# --- the check in train() and through the CLI ------------------------------------------------
@pytest.fixture(scope="module")
def fmnist_dir(tmp_path_factory):
    return write_fashion_mnist(tmp_path_factory.mktemp("fmnist"), train=80, test=20)


def qsnn(*args, available: int | None = None):
    env = {**os.environ, AVAILABLE_ENV: str(available)} if available else os.environ
    return subprocess.run([QSNN, *args], capture_output=True, text=True, timeout=600, env=env)


def test_cli_refuses_in_one_line_then_the_suggested_batch_trains(fmnist_dir, tmp_path):
    cfg = load_config("fmnist_1w2u", [f"data.data_dir={fmnist_dir}", *QUIET])
    available = estimate_step(cfg, make_datamodule(cfg)).need(20)  # room for 20 samples: 16 suggested
    runs = tmp_path / "runs"
    common = ["fmnist_1w2u", f"data.data_dir={fmnist_dir}", f"run_dir={runs}", "trainer.fast_dev_run=true", *QUIET]
    refused = qsnn("train", *common, available=available)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("qsnn: error: fmnist_1w2u at data.batch_size=128 needs about ")
    assert "GB is free (cpu)" in line and "data.batch_size=16 fits" in line and "check_memory=false" in line
    assert not runs.exists()
    suggested = qsnn("train", *common, "data.batch_size=16", available=available)
    assert suggested.returncode == 0, suggested.stderr[-2000:]
    skipped = qsnn("train", *common, "check_memory=false", available=10**6)
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert len(list((runs / "fmnist_1w2u").iterdir())) == 2


def test_not_even_batch_1_fits_says_what_to_lower(fmnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(AVAILABLE_ENV, "1000000")
    cfg = load_config("fmnist_1w2u", [f"data.data_dir={fmnist_dir}", f"run_dir={tmp_path}", *QUIET])
    with pytest.raises(MemoryEstimateError, match=r"even data.batch_size=1 needs about .*; lower model.timesteps \("):
        train(cfg)
    assert list(tmp_path.iterdir()) == []


def test_dvs_gesture_at_its_real_size_is_refused_without_allocating_it(tmp_path, monkeypatch):
    """dvsgesture_1w4u (VGGSNN, 128x128, T = 16, batch 64) on 16 GB: refused with a batch that
    fits; on 1 GB not even batch 1 fits. The estimate runs on fake tensors, so this test holds
    a few hundred MB at most."""
    write_dvs_gesture(tmp_path)
    overrides = [f"data.data_dir={tmp_path}", f"run_dir={tmp_path / 'runs'}", "trainer.fast_dev_run=true", *QUIET]
    cfg = load_config("dvsgesture_1w4u", overrides)
    monkeypatch.setenv(AVAILABLE_ENV, str(16 * 10**9))
    with pytest.raises(MemoryEstimateError) as error:
        train(cfg)
    message = str(error.value)
    need = float(message.split("needs about ")[1].split(" GB")[0])
    assert need > 70 and "16.0 GB is free (cpu)" in message and "\n" not in message
    suggested = int(message.split("data.batch_size=")[2].split(" fits")[0])
    estimate = estimate_step(cfg, make_datamodule(cfg))
    assert 1 <= suggested <= estimate.largest_batch(16 * 10**9) < 2 * suggested
    monkeypatch.setenv(AVAILABLE_ENV, str(10**9))
    with pytest.raises(MemoryEstimateError, match="lower model.timesteps or data.events.resize"):
        train(cfg)
    assert not (tmp_path / "runs").exists()
