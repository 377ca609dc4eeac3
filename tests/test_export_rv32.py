"""Export for the RISC-V microcontroller target (``--target rv32``): the RV32IMAC image under
qemu-system-riscv32 prints the Python integer reference's lines bit for bit, for a static-image
model (beside the Cortex-M4 image of the same checkpoint) and for event models; its manifest
figures; and the refusal, one line naming the Debian packages, where the toolchain is missing."""

import json
import subprocess

import pytest
from test_export import QSNN, briefly_trained, compile_and_run, needs_fmnist

from checkpoint_files import write_untrained_checkpoint
from dataset_files import write_dvs_gesture, write_fashion_mnist
from qsnn_lightning.cli import main
from qsnn_lightning.export.targets import PARTS
from qsnn_lightning.training.config import load_config
from qsnn_lightning.training.train import train


def export(checkpoint, out, target: str, samples: int, overrides=()) -> dict:
    """``qsnn export CHECKPOINT --out OUT --target TARGET --samples N`` as a real process; its manifest."""
    result = subprocess.run([QSNN, "export", str(checkpoint), "--out", str(out), "--target", target,
                             "--samples", str(samples), *overrides], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.toolchain("rv32", "cortex-m4")
@pytest.mark.slow
@needs_fmnist
def test_rv32_image_prints_the_reference_lines_beside_the_cortex_m4(tmp_path):
    checkpoint = briefly_trained("1w2u", tmp_path / "runs")
    rv32 = export(checkpoint, tmp_path / "rv32", "rv32", 5)
    m4 = export(checkpoint, tmp_path / "m4", "cortex-m4", 5)
    expected = (tmp_path / "rv32" / "expected.txt").read_text()
    assert len(expected.splitlines()) == 5 and expected == (tmp_path / "m4" / "expected.txt").read_text()
    assert (tmp_path / "rv32" / "rv32" / "rv32.out").read_text() == expected == compile_and_run(tmp_path / "rv32")
    assert rv32["qemu_matches_expected"] and rv32["target"] == "rv32"
    # the same model on both parts; the RV32 image carries no newlib (picolibc's small stdio)
    assert rv32["model_bytes"] == m4["model_bytes"] and rv32["membrane_state_bytes"] == m4["membrane_state_bytes"] == 6272
    assert rv32["model_bytes"] < rv32["flash_bytes"] <= m4["flash_bytes"] <= 128 * 1024
    assert rv32["membrane_state_bytes"] + rv32["spike_arena_bytes"] < rv32["ram_bytes"] <= 32 * 1024
    # no SMLAD, no SMULL: more instructions than the Cortex-M4, within twice as many
    assert m4["m4_instructions_per_inference"] < rv32["rv32_instructions_per_inference"] <= 2 * m4["m4_instructions_per_inference"]
    # the worst case (every spike 1) bounds the measured figure on both parts
    assert rv32["rv32_instructions_per_inference"] < rv32["rv32_worst_instructions_per_inference"]
    assert m4["m4_instructions_per_inference"] < m4["m4_worst_instructions_per_inference"]
    # minstret under -icount: the same counts on a second run
    again = subprocess.run(["make", "-s", "-C", str(tmp_path / "rv32"), "measure-rv32"], capture_output=True, text=True)
    assert f"rv32_instructions_per_inference={rv32['rv32_instructions_per_inference']} " in again.stdout
    assert f"rv32_worst_instructions_per_inference={rv32['rv32_worst_instructions_per_inference']} " in again.stdout


@pytest.mark.toolchain("rv32")
@pytest.mark.slow
@pytest.mark.parametrize("experiment, write", [("nfmnist_1w2u", lambda root: write_fashion_mnist(root, train=20, test=10)),
                                               ("dvsgesture_mcu_1w2u", write_dvs_gesture)])
def test_event_models_stream_their_frames_bit_exact_on_rv32(experiment, write, tmp_path):
    """An event model trained one short epoch on files in its dataset's real layout: the RV32 image
    prints expected.txt (T frames a sample) as the host program does."""
    write(tmp_path)
    data = [f"data.data_dir={tmp_path}", "data.download=false"]
    cfg = load_config(experiment, [*data, f"run_dir={tmp_path / 'runs'}", "trainer.max_epochs=1",
                                   "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"])
    info = export(train(cfg)["checkpoint"], tmp_path / "export", "rv32", 3, data)
    assert info["event_frames"] and info["samples"] == 3 and info["qemu_matches_expected"]
    expected = (tmp_path / "export" / "expected.txt").read_text()
    assert (tmp_path / "export" / "rv32" / "rv32.out").read_text() == expected == compile_and_run(tmp_path / "export")
    assert info["model_bytes"] < info["flash_bytes"] <= 256 * 1024
    assert info["membrane_state_bytes"] + info["spike_arena_bytes"] < info["ram_bytes"] <= 64 * 1024
    assert info["rv32_instructions_per_inference"] > 0


@pytest.mark.parametrize("target", sorted(PARTS))
def test_a_missing_toolchain_is_one_line_naming_the_packages(target, tmp_path, monkeypatch, capsys):
    checkpoint, _ = write_untrained_checkpoint(tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    capsys.readouterr()
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "out"), "--target", target]) == 2
    error = capsys.readouterr().err
    assert f"apt-get install {PARTS[target].packages}" in error and len(error.strip().splitlines()) == 1, error
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([checkpoint.name, "bin", "data"])  # nothing written
