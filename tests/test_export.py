"""Export: the integer reference against the PyTorch model, the generated C against the reference
(bit for bit, compiled with strict flags and run as a real process), the Cortex-M4 image under
QEMU, and the refusals."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from qsnn_lightning.cli import main
from qsnn_lightning.config import load_config
from qsnn_lightning.export import ExportError, fold, quantize_input, reference
from qsnn_lightning.export.writer import export_checkpoint, write_folder
from qsnn_lightning.models import build_model
from qsnn_lightning.train import train

FMNIST = Path("/usr/share/datasets/fashion-mnist")
QSNN = str(Path(sys.executable).with_name("qsnn"))
STRICT = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="arm-none-eabi-gcc / qemu-system-arm not installed",
)


def briefly_trained(bits: str, runs: Path, extra=()) -> Path:
    """A fmnistnet checkpoint after a few steps on real Fashion-MNIST (calibrated, BN statistics)."""
    experiment = "fmnist_fp" if bits == "32w32u" else "fmnist_1w2u"
    cfg = load_config(experiment, [
        f"model.bits={bits}", "data.subset=512", "data.batch_size=64", "trainer.max_epochs=1",
        "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", f"run_dir={runs}", *extra,
    ])
    return Path(train(cfg)["checkpoint"])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    if not FMNIST.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    runs = tmp_path_factory.mktemp("runs")
    return {bits: briefly_trained(bits, runs) for bits in ("1w2u", "1w4u", "1w8u")}


def compile_and_run(folder: Path) -> str:
    binary = folder / "qsnn_host"
    subprocess.run([*STRICT, f"-I{folder / 'src'}", str(folder / "host" / "main.c"), str(folder / "src" / "qsnn_runtime.c"),
                    str(folder / "src" / "qsnn_model.c"), "-o", str(binary)], check=True, capture_output=True, text=True)
    return subprocess.run([str(binary), str(folder / "samples.bin")], check=True, capture_output=True, text=True).stdout


@needs_fmnist
@pytest.mark.parametrize("bits", ["1w2u", "1w4u", "1w8u"])
def test_host_c_equals_the_integer_reference_on_100_test_images(checkpoints, bits, tmp_path):
    info = export_checkpoint(str(checkpoints[bits]), str(tmp_path / "out"), samples=100)
    folder = tmp_path / "out"
    assert info["samples"] == 100 and info["membrane_bits"] == int(bits[2])
    expected = (folder / "expected.txt").read_text()
    assert len(expected.splitlines()) == 100
    assert compile_and_run(folder) == expected
    assert json.loads((folder / "manifest.json").read_text())["bits"] == bits
    # the Makefile's own host build and check agree
    assert subprocess.run(["make", "-s", "-C", str(folder), "check-host"], capture_output=True).returncode == 0


@needs_fmnist
def test_integer_reference_agrees_with_the_pytorch_model(checkpoints):
    from qsnn_lightning.data import build_datamodule
    from qsnn_lightning.export.writer import first_test_images
    from qsnn_lightning.train import module_from_checkpoint, read_checkpoint

    backbone = module_from_checkpoint(read_checkpoint(str(checkpoints["1w2u"]))).model.eval()
    datamodule = build_datamodule("fashionmnist", augment=False, subset=512)
    model = fold(backbone)
    images = first_test_images(datamodule, 512)
    codes = quantize_input(images, model)
    with torch.no_grad():
        float_predictions = backbone(images).mean(0).argmax(1)
    integer_predictions = reference.predict(reference.run(model, codes))
    assert (float_predictions == integer_predictions).float().mean() >= 0.99
    # the model quantizes its own input: its int8 codes are the ones the C program gets
    quant = backbone.input_quant
    assert torch.equal(quant.integer_levels(images, quant.running_alpha), codes.float())


def trained_like(name: str, shape, bits: str):
    """Random weights with BN statistics and membrane scales as training leaves them, some BN
    scales negative."""
    torch.manual_seed(3)
    model = build_model(name, input_shape=shape, bits=bits, num_classes=10, timesteps=3)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data = torch.randn_like(module.weight) * 0.6 + 0.8
            module.bias.data = torch.randn_like(module.bias) * 0.3 + 0.3
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, *shape))
    return model.eval()


@pytest.mark.parametrize("name, shape, bits", [("resnet19", (3, 16, 16), "1w2u"), ("resnet19", (3, 16, 16), "1w8u"),
                                               ("vggsnn", (2, 32, 32), "1w4u")])
def test_resnet19_and_vggsnn_topologies_are_bit_exact(name, shape, bits, tmp_path):
    backbone = trained_like(name, shape, bits)
    assert any((m.weight < 0).any() for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    model = fold(backbone)
    images = torch.randn(6, *shape)
    codes = quantize_input(images, model)
    write_folder(model, codes, tmp_path / "out", {"arch": name})
    assert compile_and_run(tmp_path / "out") == (tmp_path / "out" / "expected.txt").read_text()
    with torch.no_grad():
        float_predictions = backbone(images).mean(0).argmax(1)
    assert torch.equal(reference.predict(reference.run(model, codes)), float_predictions)


def test_reference_rounding_is_half_to_even_like_torch():
    values = torch.arange(-70, 71)
    assert torch.equal(reference.round_half_even_shift(values, 3), torch.round(values.double() / 8).long())


@needs_fmnist
@needs_arm
def test_cortex_m4_image_fits_and_prints_the_host_lines(checkpoints, tmp_path):
    result = subprocess.run([QSNN, "export", str(checkpoints["1w2u"]), "--out", str(tmp_path / "m4"),
                             "--target", "cortex-m4", "--samples", "20"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "m4" / "manifest.json").read_text())
    assert info["flash_bytes"] <= 256 * 1024 and info["ram_bytes"] <= 64 * 1024
    assert info["qemu_matches_expected"]
    qemu = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting", "-kernel",
                           str(tmp_path / "m4" / "cortex-m4" / "app.elf")], capture_output=True, text=True, timeout=120)
    assert qemu.returncode == 0
    assert qemu.stdout == compile_and_run(tmp_path / "m4") == (tmp_path / "m4" / "expected.txt").read_text()


@needs_fmnist
def test_refusals_are_one_line_and_leave_nothing_behind(checkpoints, tmp_path, capsys):
    runs = tmp_path / "runs"
    full_precision = briefly_trained("32w32u", runs, ["trainer.limit_train_batches=1"])
    no_membrane_quant = briefly_trained("1w32u", runs, ["trainer.limit_train_batches=1"])
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    for args, needle in (
        ([str(full_precision), "--out", str(tmp_path / "a")], "needs 1-bit hidden weights"),
        ([str(no_membrane_quant), "--out", str(tmp_path / "b")], "membrane bits k = 32"),
        ([str(checkpoints["1w2u"]), "--out", str(occupied)], "already exists and is not empty"),
        ([str(tmp_path / "nothing.ckpt"), "--out", str(tmp_path / "c")], "does not exist"),
    ):
        assert main(["export", *args]) == 2
        error = capsys.readouterr().err
        assert needle in error and len(error.strip().splitlines()) == 1, error
    assert (occupied / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied", "runs"]  # no partial folders


def test_uncalibrated_membrane_scale_is_refused():
    model = build_model("fmnistnet", input_shape=(1, 28, 28), bits="1w2u").eval()
    with pytest.raises(ExportError, match="never calibrated"):
        fold(model)


def test_packing_puts_channel_c_in_bit_c_mod_32():
    from qsnn_lightning.export.codegen import pack_bits

    negative = np.zeros((1, 40, 1, 1), dtype=bool)
    negative[0, [0, 5, 33], 0, 0] = True
    packed = pack_bits(negative)
    assert packed.shape == (1, 1, 1, 2)
    assert packed[0, 0, 0, 0] == (1 << 0) | (1 << 5) and packed[0, 0, 0, 1] == 1 << 1
