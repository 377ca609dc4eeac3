"""The memory check of ``qsnn train``: the estimate against hand counts and a measured peak, and the
one-line refusal (exit 2, no run directory) when a step cannot fit in the free memory."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dataset_files import write_dvs_gesture, write_fashion_mnist
from qsnn_lightning.data.modules import make_datamodule
from qsnn_lightning.errors import ConfigError, MemoryEstimateError
from qsnn_lightning.training import memory_check
from qsnn_lightning.training.build import make_module
from qsnn_lightning.training.config import load_config
from qsnn_lightning.training.memory_check import (
    AVAILABLE_ENV,
    StepEstimate,
    choose_activation_memory,
    device_count,
    estimate_step,
    fake_peak_bytes,
    peak_bytes,
    probe_batch,
    sensible_batch,
    training_device,
)
from qsnn_lightning.training.train import train

QSNN = str(Path(sys.executable).with_name("qsnn"))
QUIET = ["data.download=false", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


@pytest.fixture
def estimates_once(monkeypatch):
    """memory_check.estimate_step computed once per path and network for the test (each is seconds of
    fake-tensor tracing at the paper's sizes): the tests of the choice and of its messages ask for the same ones again."""
    known = {}
    real = memory_check.estimate_step

    def estimate(cfg, datamodule, activation_memory="full"):
        key = (activation_memory, *(OmegaConf.to_yaml(cfg[part]) for part in ("model", "data", "optim")))
        if key not in known:
            known[key] = real(cfg, datamodule, activation_memory)
        return known[key]

    monkeypatch.setattr(memory_check, "estimate_step", estimate)
    return estimate


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "lean"])
def test_fake_tensors_track_the_peak_of_a_real_step_and_the_line_in_b_is_exact(mode):
    """The peak of a step on fake tensors, tensor by tensor, against the same on real zeros."""
    cfg = load_config("dvsgesture_1w4u", ["data.events.resize=16", "model.timesteps=4", "data.batch_size=3"])
    datamodule = make_datamodule(cfg)
    module = make_module(cfg, datamodule, mode).train()
    fake = fake_peak_bytes(module, datamodule, 3, 4)
    parameters = sum(p.numel() * 4 for p in module.parameters())
    # fake tensors count the fake copies of the parameters they are mixed with as well: at most their size more
    assert 0 <= fake - peak_bytes(module, probe_batch(datamodule, 3, 4)) <= parameters
    estimate = estimate_step(cfg, datamodule, mode)
    frames = 3 * 4 * 2 * 16 * 16 * 4 + 3 * 8  # the input batch and its labels
    assert estimate.fixed + 3 * estimate.per_sample == pytest.approx(fake + frames, rel=0.03)  # about a line in B
    assert estimate.state == parameters * 3  # weights, gradients, SGD momentum


@pytest.mark.slow
def test_the_lean_path_peaks_lower_on_event_frames():
    cfg = load_config("dvsgesture_1w4u", ["data.events.resize=64"])
    datamodule = make_datamodule(cfg)
    full, lean = (estimate_step(cfg, datamodule, mode).raw(8) for mode in ("full", "lean"))
    assert lean < 0.9 * full, (full, lean)


def test_the_probe_runs_eager_kernels_when_the_run_compiles_them():
    """Compiled kernels called on fake tensors crashed the process (a segmentation fault in
    qsnn train fmnist_fp speed.compile=true): the probe model is built without them."""
    cfg = load_config("fmnist_fp", ["speed.compile=true"])
    probe = memory_check._probe_module(cfg, make_datamodule(cfg), 2)
    lifs = [m for m in probe.modules() if hasattr(m, "spec") and hasattr(m.spec, "compile")]
    assert lifs and not any(lif.spec.compile for lif in lifs)


@pytest.mark.slow
def test_small_T_probes_scale_to_the_real_T_as_the_real_forward(monkeypatch):
    """The fallback (real zeros at T = 2 and 4 when fake tensors fail) errs on the safe side, by
    less than twice (real peaks at batch 1 fall at another point of the step than at batch 2)."""
    cfg = load_config("dvsgesture_1w4u", ["data.events.resize=16", "model.timesteps=8"])
    datamodule = make_datamodule(cfg)
    exact = estimate_step(cfg, datamodule)

    def unavailable(*args):
        raise RuntimeError("no fake tensors")

    monkeypatch.setattr(memory_check, "fake_peak_bytes", unavailable)
    scaled = estimate_step(cfg, datamodule)
    exact_bytes, scaled_bytes = exact.fixed + 5 * exact.per_sample, scaled.fixed + 5 * scaled.per_sample
    assert exact_bytes <= scaled_bytes < 2 * exact_bytes


MEASURE_STEP = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from qsnn_lightning.data.modules import make_datamodule
    from qsnn_lightning.training.config import load_config
    from qsnn_lightning.training.memory_check import estimate_step, probe_batch, resident_bytes
    from qsnn_lightning.training.host_memory import reuse_freed_memory
    from qsnn_lightning.training.build import make_module
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


@pytest.mark.slow
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
        for available in (3 * 10**9, 7 * 10**9):
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


@pytest.mark.slow
def test_cli_refuses_in_one_line_then_the_suggested_batch_trains(fmnist_dir, tmp_path):
    cfg = load_config("fmnist_1w2u", [f"data.data_dir={fmnist_dir}", *QUIET])
    available = estimate_step(cfg, make_datamodule(cfg)).need(20)  # room for 20 samples: 16 suggested (lean is larger here)
    runs = tmp_path / "runs"
    common = ["fmnist_1w2u", f"data.data_dir={fmnist_dir}", f"run_dir={runs}", "trainer.fast_dev_run=true", *QUIET]
    refused = qsnn("train", *common, available=available)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("qsnn: error: fmnist_1w2u at data.batch_size=128 needs about ")
    assert "GB is free (cpu)" in line and "data.batch_size=16 fits (check_memory=false" in line
    assert not runs.exists()
    suggested = qsnn("train", *common, "data.batch_size=16", available=available)
    assert suggested.returncode == 0, suggested.stderr[-2000:]
    skipped = qsnn("train", *common, "check_memory=false", available=10**6)
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert len(list((runs / "fmnist_1w2u").iterdir())) == 2


@pytest.mark.slow
def test_not_even_batch_1_fits_says_what_to_lower(fmnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(AVAILABLE_ENV, "1000000")
    cfg = load_config("fmnist_1w2u", [f"data.data_dir={fmnist_dir}", f"run_dir={tmp_path}", *QUIET])
    with pytest.raises(MemoryEstimateError, match=r"even data.batch_size=1 needs about .*; lower model.timesteps \("):
        train(cfg)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_dvs_gesture_at_its_real_size_is_refused_without_allocating_it(tmp_path, monkeypatch, estimates_once):
    """dvsgesture_1w4u (VGGSNN, 128x128, T = 16, batch 64) on 16 GB: refused on both paths, with
    the batch that fits on the lean one; on 1 GB not even batch 1 fits. The estimate runs on fake tensors, so this test holds
    a few hundred MB at most."""
    write_dvs_gesture(tmp_path)
    overrides = [f"data.data_dir={tmp_path}", f"run_dir={tmp_path / 'runs'}", "trainer.fast_dev_run=true", *QUIET]
    cfg = load_config("dvsgesture_1w4u", overrides)
    monkeypatch.setenv(AVAILABLE_ENV, str(16 * 10**9))
    with pytest.raises(MemoryEstimateError) as error:
        train(cfg)
    message = str(error.value)
    need = float(message.split("needs about ")[1].split(" GB")[0])
    lean_need = float(message.split("speed.activation_memory=lean needs about ")[1].split(" GB")[0])
    assert need > 70 and 16 < lean_need < need / 2 and "16.0 GB is free (cpu)" in message and "\n" not in message
    suggested = int(message.split("data.batch_size=")[2].split(" fits with speed.activation_memory=lean")[0])
    lean = estimates_once(cfg, make_datamodule(cfg), "lean")
    assert 1 <= suggested <= lean.largest_batch(16 * 10**9) < 2 * suggested
    monkeypatch.setenv(AVAILABLE_ENV, str(10**9))
    with pytest.raises(MemoryEstimateError, match="lower model.timesteps or data.events.resize"):
        train(cfg)
    assert not (tmp_path / "runs").exists()


# --- speed.activation_memory: which path a run takes ------------------------------------------
@pytest.mark.slow
def test_auto_takes_the_lean_path_where_only_it_fits_and_says_why(monkeypatch, estimates_once):
    cfg = load_config("dvsgesture_1w4u", ["data.events.resize=64", "data.batch_size=8", *QUIET])
    datamodule = make_datamodule(cfg)
    full, lean = (estimates_once(cfg, datamodule, mode).need(8) for mode in ("full", "lean"))
    assert lean < full
    monkeypatch.setenv(AVAILABLE_ENV, str((full + lean) // 2))
    mode, why = choose_activation_memory(cfg, datamodule)
    assert mode == "lean" and why.startswith("speed.activation_memory=auto: lean (the full path needs about")
    cfg.speed.activation_memory = "full"
    with pytest.raises(MemoryEstimateError, match="needs about"):
        choose_activation_memory(cfg, datamodule)
    cfg.speed.activation_memory = "auto"
    monkeypatch.setenv(AVAILABLE_ENV, str(full + 1))
    assert choose_activation_memory(cfg, datamodule)[0] == "full"
    monkeypatch.setenv(AVAILABLE_ENV, str(lean // 2))
    with pytest.raises(MemoryEstimateError, match="speed.activation_memory=lean needs about"):
        choose_activation_memory(cfg, datamodule)
    cfg.check_memory = False
    assert choose_activation_memory(cfg, datamodule) == ("full", "speed.activation_memory=auto: full (check_memory=false: "
                                                                  "nothing was estimated)")


def test_lean_on_a_model_it_cannot_recompute_is_one_line_and_auto_falls_back(monkeypatch):
    cfg = load_config("fmnist_1w2u", ["speed.activation_memory=lean", "check_memory=false"])
    datamodule = make_datamodule(cfg)
    monkeypatch.setattr(memory_check, "_lean_blockers", lambda cfg, datamodule: ["features.1 (Dropout)"])
    with pytest.raises(ConfigError, match=r"^speed.activation_memory=lean cannot recompute features.1 \(Dropout\); use "):
        choose_activation_memory(cfg, datamodule)
    cfg.speed.activation_memory = "auto"
    assert choose_activation_memory(cfg, datamodule) == (
        "full", "speed.activation_memory=auto: full (the lean path cannot recompute features.1 (Dropout))")


@pytest.mark.slow
def test_a_bad_activation_memory_value_is_one_line():
    result = qsnn("train", "fmnist_1w2u", "speed.activation_memory=maybe")
    assert result.returncode == 2 and result.stderr.strip() == (
        "qsnn: error: bad value for 'speed.activation_memory': 'maybe'; allowed: full, lean, auto")
