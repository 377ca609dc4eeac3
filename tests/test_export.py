"""Export: the integer reference against the PyTorch model, the generated C against the reference
(bit for bit, compiled with strict flags and sanitizers and run as a real process), streaming
(qsnn_step, qsnn_reset) against qsnn_classify and the Python stream, event-frame models, the memory
plan, the Cortex-M4 image under QEMU, and the refusals (the RV32 image: test_export_rv32.py)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_files import write_dvs_gesture, write_fashion_mnist
from qsnn_lightning.checkpoint import backbone_from_checkpoint, read_checkpoint
from qsnn_lightning.cli import main
from qsnn_lightning.export import ExportError, fold, quantize_input, reference
from qsnn_lightning.export.codegen import pack_positions
from qsnn_lightning.export.integer_model import PoolLayer
from qsnn_lightning.export.memory import last_reader, map_words, plan
from qsnn_lightning.export.targets import check_fits
from qsnn_lightning.export.writer import RUNTIME_SOURCES, export_checkpoint, manifest, write_folder
from qsnn_lightning.snn.backbones import build_model
from qsnn_lightning.snn.spec import ModelSpec
from qsnn_lightning.training.config import load_config
from qsnn_lightning.training.train import train

FMNIST = Path("/usr/share/datasets/fashion-mnist")
QSNN = str(Path(sys.executable).with_name("qsnn"))
STRICT = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
SANITIZED = [*STRICT, "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
# the runtime's build paths (writer.RUNTIME_SOURCES): the microcontrollers' (event-driven, packed levels), the
# host's (QSNN_HOST: dense popcount, int8 levels) and the plain reference kernels
RUNTIME_PATHS = ("mcu", "host", "reference")
STREAM_CHECK = Path(__file__).with_name("c") / "stream_check.c"
API_CHECK = Path(__file__).with_name("c") / "api_check.c"
TWO_MODELS = Path(__file__).with_name("c") / "two_models.c"
TWO_MODELS_MCU = Path(__file__).with_name("c") / "two_models_mcu.c"
EXPORT_OF = Path(__file__).with_name("c") / "export_of.c"
KERNEL_CHECK = Path(__file__).with_name("c") / "kernel_check.c"
FIRE_BIAS_CHECK = Path(__file__).with_name("c") / "fire_bias_check.c"
LIF_CHECK = Path(__file__).with_name("c") / "lif_check.c"
RUNTIME = Path(__file__).parents[1] / "src" / "qsnn_lightning" / "export" / "runtime"
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")


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


def model_flags(folder: Path) -> list[str]:
    """The build flags the export's model chooses (``QSNN_MODEL_FLAGS`` of its sources.mk)."""
    line = next(line for line in (folder / "sources.mk").read_text().splitlines() if line.startswith("QSNN_MODEL_FLAGS"))
    return line.split(":=", 1)[1].split()


def build_command(folder: Path, path: str = "mcu", flags=SANITIZED, own_flags: bool = True) -> list[str]:
    """The compiler command line, less the program and its output, for the runtime of an export folder on one
    build path (its files, ``-DQSNN_HOST`` for the host's) and the folder's generated model, with the model's
    build flags as its Makefiles give them (``own_flags``; without them the runtime runs every kind of model)."""
    sources = [folder / "src" / name for name in (*RUNTIME_SOURCES["common"], *RUNTIME_SOURCES[path], "qsnn_model.c")]
    return [*flags, *(model_flags(folder) if own_flags else []), *(["-DQSNN_HOST"] if path == "host" else []),
            f"-I{folder / 'include'}",
            f"-I{folder / 'src'}", *map(str, sources)]


def compile_and_run(folder: Path, main_c: "Path | None" = None, path: str = "mcu") -> str:
    """Build a program (the export's host program by default) against the runtime on one build path, sanitized,
    and run it on samples.bin; returns its stdout."""
    main_c = main_c or folder / "host" / "main.c"
    binary = folder / f"{main_c.stem}_{path}"
    subprocess.run([*build_command(folder, path), str(main_c), "-o", str(binary)], check=True, capture_output=True,
                   text=True)
    return subprocess.run([str(binary), str(folder / "samples.bin")], check=True, capture_output=True, text=True).stdout


def stream_sections(folder: Path, path: str = "mcu") -> dict[str, list[str]]:
    """tests/c/stream_check.c's lines by section (classify, steps, carried, reset)."""
    sections: dict[str, list[str]] = {}
    for line in compile_and_run(folder, STREAM_CHECK, path).splitlines():
        section, rest = line.split(" ", 1)
        sections.setdefault(section, []).append(rest)
    return sections


def python_carried_lines(model, samples: torch.Tensor) -> list[str]:
    """The Python stream's logits of each sample's T steps when the previous sample's T steps ran
    first without a reset (stream_check.c's "carried" section)."""
    lines = []
    for index in range(len(samples)):
        stream = reference.Stream(model)
        before = 0
        for previous in ([samples[index - 1 : index]] if index else []):
            for t in range(model.timesteps):
                before = stream.step(previous[:, t] if previous.dim() == 5 else previous)
        for t in range(model.timesteps):
            after = stream.step(samples[index : index + 1, t] if samples.dim() == 5 else samples[index : index + 1])
        logits = (after - before)[0]
        lines.append(" ".join(str(int(v)) for v in (int(logits.argmax()), *logits)))
    return lines


def assert_streaming_matches(folder: Path, model, samples: torch.Tensor, path: str = "mcu") -> dict[str, list[str]]:
    """classify == reset + T steps == steps after a reset == expected.txt; carried == Python."""
    expected = (folder / "expected.txt").read_text().splitlines()
    sections = stream_sections(folder, path)
    assert sections["classify"] == sections["steps"] == sections["reset"] == expected[: len(sections["steps"])]
    assert sections["carried"] == python_carried_lines(model, samples)
    return sections


@pytest.mark.slow
@needs_fmnist
@pytest.mark.parametrize("bits", ["1w2u", "1w4u", "1w8u"])
def test_host_c_equals_the_integer_reference_on_100_test_images(checkpoints, bits, tmp_path):
    info = export_checkpoint(str(checkpoints[bits]), str(tmp_path / "out"), samples=100)
    folder = tmp_path / "out"
    assert info["samples"] == 100 and info["membrane_bits"] == int(bits[2])
    expected = (folder / "expected.txt").read_text()
    assert len(expected.splitlines()) == 100
    assert [compile_and_run(folder, path=path) for path in RUNTIME_PATHS] == [expected] * len(RUNTIME_PATHS)
    assert json.loads((folder / "manifest.json").read_text())["bits"] == bits
    # the int32 membranes of the k-bit layers: every level fits its packed field
    backbone, _ = backbone_from_checkpoint(read_checkpoint(str(checkpoints[bits])))
    field_bits = {layer.lif.field_bits for layer in fold(backbone.eval()).spiking_layers()}
    assert field_bits == {{"1w2u": 2, "1w4u": 4, "1w8u": 8}[bits]}
    # the Makefile's own host builds (static images alone) and checks agree
    assert model_flags(folder) == ["-DQSNN_STATIC_ONLY"]
    for check in ("check-host", "check-mcu", "check-reference"):
        assert subprocess.run(["make", "-s", "-C", str(folder), check], capture_output=True).returncode == 0


@pytest.mark.slow
@needs_fmnist
def test_integer_reference_agrees_with_the_pytorch_model(checkpoints):
    from qsnn_lightning.data import build_data
    from qsnn_lightning.export.writer import first_test_samples

    backbone = backbone_from_checkpoint(read_checkpoint(str(checkpoints["1w2u"])))[0].eval()
    model = fold(backbone)
    images = first_test_samples(build_data("fashionmnist", augment=False, subset=512), 512)
    codes = quantize_input(images, model)
    with torch.no_grad():
        float_predictions = backbone(images).mean(0).argmax(1)
    integer_predictions = reference.predict(reference.run(model, codes))
    assert (float_predictions == integer_predictions).float().mean() >= 0.99
    # the model quantizes its own input: its int8 codes are the ones the C program gets
    quant = backbone.input_quant
    assert torch.equal(quant.integer_levels(images, quant.running_alpha), codes.float())


def trained_like(name: str, shape, bits: str, membrane_scale: str = "max"):
    """Random weights with BN statistics and membrane scales as training leaves them, some BN
    scales negative (a learned membrane scale: a different one per layer)."""
    torch.manual_seed(3)
    model = build_model(ModelSpec(arch=name, bits=bits, timesteps=3, membrane_scale=membrane_scale), input_shape=shape,
                        num_classes=10)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data = torch.randn_like(module.weight) * 0.6 + 0.8
            module.bias.data = torch.randn_like(module.bias) * 0.3 + 0.3
        if getattr(module, "alpha", None) is not None:
            module.alpha.data.uniform_(0.4, 1.3)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, *shape))
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("name, shape, bits, frames, membrane_scale", [
    ("resnet19", (3, 16, 16), "1w2u", False, "max"), ("resnet19", (3, 16, 16), "1w8u", False, "max"),
    ("vggsnn", (2, 32, 32), "1w4u", True, "max"), ("fmnistnet", (2, 34, 34), "1w2u", True, "max"),
    ("fmnistnet", (1, 28, 28), "1w2u", False, "threshold"), ("fmnistnet", (1, 28, 28), "1w4u", False, "learned"),
])
def test_topologies_stream_bit_exact(name, shape, bits, frames, membrane_scale, tmp_path):
    """ResNet19 (identity and 1x1 conv shortcuts), VGGSNN and the small net, on static images and
    on event frames, with the membrane scales the export supports: the C host program,
    qsnn_classify, T calls of qsnn_step, a state carried over from the previous sample and a
    reset all equal the Python stream. The small net runs on every build path; the large ones,
    whose sanitized reference kernels take most of a minute, run the host program on the
    optimized paths and stream on the microcontroller's (the kernel test below checks those
    kernels against the reference ones on ResNet19)."""
    backbone = trained_like(name, shape, bits, membrane_scale)
    assert any((m.weight < 0).any() for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    model = fold(backbone, event_frames=frames)
    inputs = torch.randn(5, backbone.timesteps, *shape).clamp(min=0) if frames else torch.randn(5, *shape)
    codes = quantize_input(inputs, model)
    write_folder(model, plan(model), codes, tmp_path / "out", {"arch": name})
    expected = (tmp_path / "out" / "expected.txt").read_text()
    small = name == "fmnistnet"
    for path in RUNTIME_PATHS if small else ("mcu", "host"):
        assert compile_and_run(tmp_path / "out", path=path) == expected
    for path in ("mcu", "host") if small else ("mcu",):  # streaming is qsnn.c's on every path
        carried = assert_streaming_matches(tmp_path / "out", model, codes, path)["carried"]
        assert carried[1:] != expected.splitlines()[1:]  # the state does persist between calls
    with torch.no_grad():
        float_predictions = backbone(inputs).mean(0).argmax(1)
    assert torch.equal(reference.predict(reference.run(model, codes)), float_predictions)


def test_python_stream_of_t_steps_equals_run_and_reset_clears_it():
    model = fold(trained_like("fmnistnet", (1, 28, 28), "1w2u"))
    codes = quantize_input(torch.randn(4, 1, 28, 28), model)
    stream = reference.Stream(model)
    for _ in range(model.timesteps):
        logits = stream.step(codes)
    assert torch.equal(logits, reference.run(model, codes))
    assert any(level.abs().sum() > 0 for level in stream.levels)
    stream.reset()
    assert stream.logits is None and all(level is None for level in stream.levels)


def test_reference_rounding_is_half_to_even_like_torch():
    values = torch.arange(-70, 71)
    assert torch.equal(reference.round_half_even_shift(values, 3), torch.round(values.double() / 8).long())
    # hand-computed: 12/8 = 1.5 -> 2, 20/8 = 2.5 -> 2, -12/8 = -1.5 -> -2, -20/8 = -2.5 -> -2, -13/8 -> -2
    assert reference.round_half_even_shift(torch.tensor([12, 20, -12, -20, -13]), 3).tolist() == [2, 2, -2, -2, -2]


@pytest.mark.toolchain
@pytest.mark.slow
@needs_fmnist
def test_cortex_m4_image_fits_and_prints_the_host_lines(checkpoints, tmp_path):
    result = subprocess.run([QSNN, "export", str(checkpoints["1w2u"]), "--out", str(tmp_path / "m4"),
                             "--target", "cortex-m4", "--samples", "20"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "m4" / "manifest.json").read_text())
    # fmnistnet 1w-2u: 2 bits per neuron, 16x28x28 + 32x14x14 + 2 x 64x7x7 neurons, words of 16 levels
    assert info["membrane_state_bytes"] == (16 * 28 * 28 + 32 * 14 * 14 + 2 * 64 * 7 * 7) * 2 // 8 == 6272
    assert info["flash_bytes"] <= 128 * 1024 and info["ram_bytes"] <= 32 * 1024
    assert 0 < info["m4_instructions_per_inference"] <= 6_200_000
    assert info["qemu_matches_expected"]
    qemu = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting", "-kernel",
                           str(tmp_path / "m4" / "cortex-m4" / "app.elf")], capture_output=True, text=True, timeout=120)
    assert qemu.returncode == 0
    assert qemu.stdout == compile_and_run(tmp_path / "m4") == (tmp_path / "m4" / "expected.txt").read_text()


@pytest.mark.toolchain
@pytest.mark.slow
@needs_fmnist
def test_cortex_m4_manifest_gives_the_worst_case_beside_the_measured_figure(checkpoints, tmp_path):
    """The worst case (app-worst.elf: -DQSNN_WORST_CASE, one inference of a dense input, every spike 1) is
    counted under QEMU -icount as the measured figure is, and bounds it; 1w4u: 4-bit fields in the LIF."""
    out = tmp_path / "m4"
    result = subprocess.run([QSNN, "export", str(checkpoints["1w4u"]), "--out", str(out), "--target", "cortex-m4",
                             "--samples", "5"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "manifest.json").read_text())
    assert info["qemu_matches_expected"] and 0 < info["firing_rate"] < 1
    assert 0 < info["m4_instructions_per_inference"] < info["m4_worst_instructions_per_inference"]
    assert "samples=1" in (out / "cortex-m4" / "m4-worst.err").read_text()
    again = subprocess.run(["make", "-s", "-C", str(out), "measure-m4"], capture_output=True, text=True)
    assert f"m4_worst_instructions_per_inference={info['m4_worst_instructions_per_inference']} " in again.stdout


@pytest.mark.toolchain
@pytest.mark.slow
@pytest.mark.parametrize("experiment, write", [("nfmnist_1w2u", lambda root: write_fashion_mnist(root, train=20, test=10)),
                                               ("dvsgesture_mcu_1w2u", write_dvs_gesture)])
def test_event_models_stream_their_frames_bit_exact_on_host_and_cortex_m4(experiment, write, tmp_path, capsys):
    """An event model trained one short epoch on files in its dataset's real layout exports with
    --target cortex-m4: samples.bin holds N x T x C x H x W frames, the sanitized host program and
    QEMU print expected.txt, and streaming matches the Python stream."""
    write(tmp_path)
    cfg = load_config(experiment, [f"data.data_dir={tmp_path}", "data.download=false", f"run_dir={tmp_path / 'runs'}",
                                   "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"])
    checkpoint = train(cfg)["checkpoint"]
    out = tmp_path / "export"
    result = subprocess.run([QSNN, "export", checkpoint, "--out", str(out), "--target", "cortex-m4", "--samples", "3",
                             f"data.data_dir={tmp_path}", "data.download=false"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "manifest.json").read_text())
    shape = (cfg.model.timesteps, *info["input_shape"])
    count = info["samples"]  # the test split's first 3 (the DVS-Gesture files hold 3)
    assert info["event_frames"] and info["sample_shape"] == list(shape) and count == 3
    assert (out / "samples.bin").stat().st_size == count * int(np.prod(shape))
    assert info["qemu_matches_expected"] and 0 < info["m4_instructions_per_inference"] < info["m4_worst_instructions_per_inference"]
    assert info["flash_bytes"] <= 256 * 1024 and info["ram_bytes"] <= 64 * 1024 and info["membrane_state_bytes"] > 0
    expected = (out / "expected.txt").read_text()
    assert compile_and_run(out) == expected == (out / "cortex-m4" / "m4.out").read_text()
    assert compile_and_run(out, path="host") == compile_and_run(out, path="reference") == expected
    # the Makefile's host programs, for both kinds of model (no QSNN_STATIC_ONLY)
    assert model_flags(out) == []
    for check in ("check-host", "check-mcu"):
        assert subprocess.run(["make", "-s", "-C", str(out), check], capture_output=True).returncode == 0
    model = fold(backbone_from_checkpoint(read_checkpoint(checkpoint))[0].eval(), event_frames=True)
    codes = torch.from_numpy(np.fromfile(out / "samples.bin", dtype=np.int8).reshape(count, *shape).copy())
    assert [" ".join(map(str, (int(p), *row.tolist()))) for p, row in
            zip(reference.predict(reference.run(model, codes)), reference.run(model, codes))] == expected.splitlines()
    for path in RUNTIME_PATHS:
        assert_streaming_matches(out, model, codes, path)
    # frames that do not match the model's input are one line, and nothing is written
    capsys.readouterr()
    assert main(["export", checkpoint, "--out", str(tmp_path / "wrong"), f"data.data_dir={tmp_path}",
                 "data.download=false", "data.events.resize=16"]) == 2
    error = capsys.readouterr().err
    assert "but the model reads" in error and len(error.strip().splitlines()) == 1 and not (tmp_path / "wrong").exists()


@pytest.mark.slow
@needs_fmnist
def test_refusals_are_one_line_and_leave_nothing_behind(checkpoints, tmp_path, capsys):
    runs = tmp_path / "runs"
    full_precision = briefly_trained("32w32u", runs, ["trainer.limit_train_batches=1"])
    no_membrane_quant = briefly_trained("1w32u", runs, ["trainer.limit_train_batches=1"])
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    capsys.readouterr()  # what training printed (torch._dynamo's recompile warnings among it) is not the export's
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
    model = build_model(ModelSpec(arch="fmnistnet", bits="1w2u"), input_shape=(1, 28, 28)).eval()
    with pytest.raises(ExportError, match="never calibrated"):
        fold(model)


def test_tanh_membrane_scale_is_refused_naming_the_exportable_ones():
    with pytest.raises(ExportError, match="membrane_scale=tanh cannot be exported.*max, threshold or learned"):
        fold(trained_like("fmnistnet", (1, 28, 28), "1w2u", "tanh"))


def test_packing_puts_output_channel_c_in_bit_c_mod_32_of_each_input_position():
    negative = np.zeros((40, 2, 3, 3), dtype=bool)  # [Cout, Cin, kh, kw]
    negative[[0, 5, 33], 1, 2, 0] = True  # input position (ky * 3 + kx) * Cin + ci = (2 * 3 + 0) * 2 + 1 = 13
    negative[7, 0, 0, 1] = True  # position (0 * 3 + 1) * 2 + 0 = 2
    packed = pack_positions(negative)
    assert packed.shape == (18, 2) and packed.dtype == np.uint32
    assert packed[13].tolist() == [(1 << 0) | (1 << 5), 1 << 1] and packed[2].tolist() == [1 << 7, 0]
    assert packed.sum() == packed[13].sum() + packed[2].sum()


def test_memory_plan_reuses_dead_maps_and_never_overlaps_live_ones():
    model = fold(trained_like("fmnistnet", (1, 28, 28), "1w2u"))
    memory = plan(model)
    maps, last = model.maps(), last_reader(model)
    # stem 16x28x28 spikes (1 word a pixel), pool 3 planes of 16x14x14, conv 32x14x14, pool 3 x 32x7x7,
    # conv 64x7x7 (2 words), conv 64x7x7, pool 3 planes of 64x3x3
    assert [map_words(info) for info in maps] == [784, 588, 196, 147, 98, 98, 54]
    assert memory.arena_words < sum(map_words(info) for info in maps)
    assert memory.arena_words == 784 + 588  # the stem and its pooling are alive together, the largest pair
    for i in range(len(maps)):
        for j in range(i):
            if last[j] >= i:  # map j is still read when map i is written
                a, b = memory.map_offsets[i], memory.map_offsets[j]
                assert a + map_words(maps[i]) <= b or b + map_words(maps[j]) <= a
    assert memory.membrane_state_bytes == 6272


@pytest.mark.parametrize("target, part", [("cortex-m4", "Cortex-M4"), ("rv32", "RV32")])
def test_a_model_too_large_for_a_microcontroller_is_one_line_naming_the_sizes(target, part):
    model = fold(trained_like("resnet19", (3, 16, 16), "1w2u"))
    info = manifest(model, plan(model), {"arch": "resnet19", "bits": "1w2u"}, 0, target)
    with pytest.raises(ExportError) as error:
        check_fits(info, target)
    message = str(error.value)
    assert f"{info['model_bytes']:,} bytes of flash" in message and "262,144" in message and "\n" not in message
    assert f"the {part} target" in message


@pytest.fixture(scope="module")
def sanitized_host_program(tmp_path_factory):
    """An fmnistnet export's host program built with ASan and UBSan: ``(folder, program)``."""
    folder = tmp_path_factory.mktemp("host") / "out"
    model = fold(trained_like("fmnistnet", (1, 28, 28), "1w2u"))
    write_folder(model, plan(model), quantize_input(torch.randn(2, 1, 28, 28), model), folder, {})
    compile_and_run(folder)
    return folder, folder / "main_mcu"


@pytest.mark.parametrize("samples, problem", [
    (None, "cannot read {path}: No such file or directory; give the samples file"),
    ("folder", "cannot read {path}: Is a directory"),
    (b"", "{path} has 0 bytes, not a whole number of samples of 784 bytes (C x H x W int8)"),
    (bytes(784 * 2 - 1), "{path} has 1567 bytes, not a whole number of samples of 784 bytes"),
    (bytes(784 + 5), "{path} has 789 bytes, not a whole number of samples"),
])
def test_host_program_refuses_unusable_samples_files_in_one_line(sanitized_host_program, tmp_path, samples, problem):
    """Missing, a folder, empty, truncated, the wrong size: one line on stderr, exit status 2,
    nothing on stdout, and no sanitizer report."""
    _, program = sanitized_host_program
    path = tmp_path / "samples.bin"
    if samples == "folder":
        path.mkdir()
    elif samples is not None:
        path.write_bytes(samples)
    result = subprocess.run([str(program), str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("qsnn_host: " + problem.format(path=path))
    assert len(result.stderr.splitlines()) == 1 and "(samples.bin)" in result.stderr


@pytest.mark.parametrize("path", RUNTIME_PATHS)
def test_every_misuse_of_the_api_is_a_status_code_that_changes_nothing(sanitized_host_program, path):
    """tests/c/api_check.c, sanitized: NULL pointers, a zeroed context, a context of another model, a frame or
    sample one value off, room for one logit too few, a workspace one byte short or misaligned, a model of
    another version or build path: each its status; the steps between them still give qsnn_classify's line,
    which is expected.txt's."""
    folder, _ = sanitized_host_program
    expected = (folder / "expected.txt").read_text().splitlines()[0]
    assert compile_and_run(folder, API_CHECK, path).splitlines() == [expected, expected]


@pytest.mark.parametrize("name, shape, bits, frames", [("fmnistnet", (1, 28, 28), "1w2u", False),
                                                       ("resnet19", (3, 16, 16), "1w8u", False),
                                                       ("dvsmcunet", (2, 32, 32), "1w2u", True),
                                                       ("fmnistnet", (2, 60, 60), "1w2u", True),
                                                       ("fmnistnet", (2, 64, 64), "1w2u", True),
                                                       ("fmnistnet", (1, 40, 40), "1w4u", False)])
def test_optimized_kernels_equal_the_reference_kernels_on_random_inputs(name, shape, bits, frames, tmp_path):
    """tests/c/kernel_check.c, sanitized, on each build path: every stem and binary conv (ResNet19's identity and
    1x1 conv shortcuts among them) on random frames and random spike and count maps, sparse to dense, then half
    uniform (pixels the kernels skip or remember), levels carried over six calls: the microcontroller and host
    kernels write the reference kernels' spikes. The event-frame dvsmcunet (two input channels, 2-bit levels) takes
    the stem's fused path: windows of one to four nonzero pairs of taps (found from the rows' nonzero columns) and of
    more, resting and charged neurons; the 60-wide event-frame fmnistnet takes it on rows of two words of columns, and
    the 40-wide static one finds its windows of zeros on such rows. The 64-wide event-frame fmnistnet (66 padded
    columns) takes the stem's generic fused path, and its binary conv reads a 32-wide map whose rows with the padding
    outgrow a word (the occupancy in 64 bits)."""
    model = fold(trained_like(name, shape, bits), event_frames=frames)
    write_folder(model, plan(model), None, tmp_path / "out", {})
    outputs = {}
    for path in RUNTIME_PATHS:
        program = tmp_path / f"kernel_check_{path}"
        subprocess.run([*build_command(tmp_path / "out", path), str(KERNEL_CHECK), "-o", str(program)], check=True,
                       capture_output=True, text=True)
        outputs[path] = subprocess.run([str(program)], check=True, capture_output=True, text=True).stdout
    assert outputs["mcu"] == outputs["host"] == outputs["reference"]
    lines = outputs["reference"].splitlines()
    assert len(lines) == 6 * (1 + sum(not isinstance(layer, PoolLayer) for layer in model.layers))
    assert all(len(set(line.split()[2:])) > 1 for line in lines)  # every output map varies: spikes, not none or all


def test_lif_of_pixels_without_input_equals_the_lif_of_their_biases(tmp_path):
    """tests/c/fire_bias_check.c, sanitized: the microcontrollers' LIF of a pixel whose currents are the biases (a
    conv pixel without input, a stem window of zeros: the layer's outcomes at each level, selected per neuron) writes
    qsnn_fire_pixel's levels and spikes, at 2-, 4- and 8-bit fields, 1 to 136 channels, remembered pixels among them."""
    program = tmp_path / "fire_bias_check"
    subprocess.run([*SANITIZED, f"-I{RUNTIME / 'include'}", f"-I{RUNTIME / 'src'}", str(FIRE_BIAS_CHECK),
                    str(RUNTIME / "src" / "lif_mcu.c"), "-o", str(program)], check=True, capture_output=True, text=True)
    result = subprocess.run([str(program)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.endswith(" 0 mismatches\n"), result.stdout + result.stderr


def test_lif_on_the_boundaries_of_rounding_and_threshold_equals_the_reference(tmp_path):
    """tests/c/lif_check.c, sanitized, built on the reference LIF and on the microcontrollers': membranes at and
    beside -2^(F-1), 0, 2^(F-1), 2^F and Theta from every level, thresholds above 2^F down to below 0 (the quiet
    neurons' one comparison and its limit), 2-, 4- and 8-bit fields: the same next levels and spikes, and the LIF
    from counts (at k = 2 also from raised biases) the same as from currents."""
    lines = {}
    for name, lif_source, flags in (("reference", "lif_ref.c", ["-DQSNN_REFERENCE"]), ("mcu", "lif_mcu.c", [])):
        program = tmp_path / f"lif_check_{name}"
        subprocess.run([*SANITIZED, *flags, f"-I{RUNTIME / 'include'}", f"-I{RUNTIME / 'src'}", str(LIF_CHECK),
                        str(RUNTIME / "src" / lif_source), "-o", str(program)], check=True, capture_output=True, text=True)
        result = subprocess.run([str(program)], capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout.endswith("306 cases, 0 mismatches\n"), result.stdout + result.stderr
        lines[name] = result.stdout.splitlines()
    assert lines["mcu"] == lines["reference"]
    # hand-computed, 2-bit fields, Theta = 1.5 levels, neurons 0..2 from levels -1, 0, 1 at U = -2^(F-1) - 1,
    # -2^(F-1), -2^(F-1) + 1: next levels -1 (field 11), 0, 0; no spike
    spikes, first_word = lines["reference"][0].split()[2:4]
    assert int(first_word, 16) & 0x3F == 0b000011 and int(spikes, 16) & 0b111 == 0


@pytest.fixture(scope="module")
def two_exports(tmp_path_factory):
    """Static-image fmnistnets 1w2u and 1w4u (2- and 4-bit fields) and an event-frame fmnistnet 1w4u (2 x 34 x 34,
    T frames a sample), exported with their own --c-name: ``{c_name: folder}``."""
    root = tmp_path_factory.mktemp("two")
    folders = {}
    for c_name, shape, bits, frames in (("fmnist_1w2u", (1, 28, 28), "1w2u", False),
                                        ("events_1w4u", (2, 34, 34), "1w4u", True),
                                        ("fmnist_1w4u", (1, 28, 28), "1w4u", False)):
        backbone = trained_like("fmnistnet", shape, bits)
        model = fold(backbone, event_frames=frames)
        inputs = torch.randn(3, backbone.timesteps, *shape).clamp(min=0) if frames else torch.randn(3, *shape)
        folders[c_name] = root / c_name
        write_folder(model, plan(model), quantize_input(inputs, model), folders[c_name], {}, c_name=c_name)
    return folders


@pytest.mark.parametrize("path", RUNTIME_PATHS)
def test_two_models_run_interleaved_in_one_program_each_equal_to_its_reference(two_exports, path, tmp_path):
    """tests/c/two_models.c, sanitized: one runtime (built for both kinds: no QSNN_STATIC_ONLY), two generated
    models, a static and an event model (their symbols and macros named by --c-name), a context each, stepped in
    turn: each prints its own expected.txt."""
    (first, first_folder), (second, second_folder) = list(two_exports.items())[:2]
    assert f"#define {first.upper()}_CTX_BYTES" in (first_folder / "src" / "qsnn_model.h").read_text()
    objects = []
    for name, folder in ((first, first_folder), (second, second_folder)):  # each model against its own qsnn_model.h
        objects.append(tmp_path / f"{name}.o")
        subprocess.run([*SANITIZED, *(["-DQSNN_HOST"] if path == "host" else []), f"-I{folder / 'include'}",
                        f"-I{folder / 'src'}", "-c", str(folder / "src" / "qsnn_model.c"), "-o", str(objects[-1])],
                       check=True, capture_output=True, text=True)
    runtime = [arg for arg in build_command(first_folder, path, own_flags=False) if not arg.endswith("qsnn_model.c")]
    program = tmp_path / "two_models"
    subprocess.run([*runtime, f"-DFIRST={first}", f"-DSECOND={second}", str(TWO_MODELS), *map(str, objects), "-o",
                    str(program)], check=True, capture_output=True, text=True)
    lines = subprocess.run([str(program), str(first_folder / "samples.bin"), str(second_folder / "samples.bin")],
                           check=True, capture_output=True, text=True).stdout.splitlines()
    for section, folder in (("first", first_folder), ("second", second_folder)):
        assert [line.split(" ", 1)[1] for line in lines if line.startswith(section + " ")] == \
            (folder / "expected.txt").read_text().splitlines()


@pytest.mark.parametrize("path", RUNTIME_PATHS)
def test_a_build_for_static_images_runs_static_models_and_refuses_event_models(two_exports, path, tmp_path):
    """sources.mk: a static model's export builds with -DQSNN_STATIC_ONLY (the stem's event-frame kernels left out
    of its images), an event model's without. Such a build runs a static model (its expected.txt) and refuses an
    event model: qsnn_init returns QSNN_ERROR_MODEL (-5), nothing is printed."""
    static, events = two_exports["fmnist_1w2u"], two_exports["events_1w4u"]
    assert model_flags(static) == ["-DQSNN_STATIC_ONLY"] and model_flags(events) == []
    assert compile_and_run(static, path=path) == (static / "expected.txt").read_text()
    program = tmp_path / "static_only"
    subprocess.run([*build_command(events, path, [*SANITIZED, "-DQSNN_STATIC_ONLY"]), str(events / "host" / "main.c"),
                    "-o", str(program)], check=True, capture_output=True, text=True)
    result = subprocess.run([str(program), str(events / "samples.bin")], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "qsnn_host: sample 0: the runtime returned status -5 (include/qsnn.h)\n"


@pytest.mark.slow
@pytest.mark.parametrize("part", [pytest.param("cortex-m4", marks=pytest.mark.toolchain("cortex-m4")),
                                  pytest.param("rv32", marks=pytest.mark.toolchain("rv32"))])
def test_two_models_run_interleaved_on_a_microcontroller_each_equal_to_its_reference(two_exports, part):
    """tests/c/two_models_mcu.c under QEMU: the static fmnistnets 1w2u and 1w4u (both fit the part's RAM together),
    their samples and workspaces in one image with the runtime's microcontroller path, stepped in turn: each prints
    its own expected.txt."""
    first, second = "fmnist_1w2u", "fmnist_1w4u"
    part_folder = two_exports[first] / part
    make = ["make", "-s", "-C", str(part_folder), "-f", "Makefile.fragment"]
    settings = subprocess.run([*make, "--eval", "print-%: ; @echo $($*)", "print-CC", "print-CFLAGS"],
                              check=True, capture_output=True, text=True).stdout.splitlines()
    compiler = [settings[0], *settings[1].split()]
    objects = []
    for prefix, name in (("first", first), ("second", second)):
        folder = two_exports[name]
        includes = [f"-I{folder / 'include'}", f"-I{folder / 'src'}", f"-I{folder / 'mcu'}"]
        for source, defines in ((folder / "src" / "qsnn_model.c", []), (EXPORT_OF, [f"-DPREFIX={prefix}"])):
            objects.append(part_folder / f"{prefix}_{source.stem}.o")
            subprocess.run([*compiler, *defines, *includes, "-c", str(source), "-o", str(objects[-1])], check=True,
                           capture_output=True, text=True)
    objects.append(part_folder / "two_models_mcu.o")
    subprocess.run([*compiler, f"-DFIRST={first}", f"-DSECOND={second}", f"-I{part_folder}",
                    f"-I{two_exports[first] / 'include'}", "-c", str(TWO_MODELS_MCU), "-o", str(objects[-1])],
                   check=True, capture_output=True, text=True)
    runtime = [f"../src/{name}" for name in (*RUNTIME_SOURCES["common"], *RUNTIME_SOURCES["mcu"])]
    sources = " ".join(["$(MCU)/qsnn_mcu.c", "startup.c", *runtime, *map(str, objects)])
    out = {"cortex-m4": "m4.out", "rv32": "rv32.out"}[part]
    result = subprocess.run([*make, f"SOURCES={sources}", out], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = (part_folder / out).read_text().splitlines()
    for index, name in (("1", first), ("2", second)):
        assert [line.split(" ", 1)[1] for line in lines if line.startswith(index + " ")] == \
            (two_exports[name] / "expected.txt").read_text().splitlines()


@pytest.mark.parametrize("name", ["9lives", "qsnn_init", "has-dash", "x" * 41])
def test_a_c_name_that_cannot_be_a_model_symbol_is_refused(name, tmp_path):
    model = fold(trained_like("fmnistnet", (1, 28, 28), "1w2u"))
    with pytest.raises(ExportError, match="--c-name .* is not usable as the model's C symbol"):
        write_folder(model, plan(model), None, tmp_path / "out", {}, c_name=name)
    assert not (tmp_path / "out").exists()


BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.mark.slow
@needs_fmnist
def test_export_bench_measures_both_sides_on_a_checkpoint(checkpoints, tmp_path):
    figures_file = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "export_bench.py"), str(checkpoints["1w2u"]),
                             "--images", "30", "--latency-images", "30", "--rounds", "3", "--m4-samples", "2",
                             "--json", str(figures_file)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    figures = json.loads(figures_file.read_text())
    assert figures["images"] == 30 and figures["c_equals_reference"]
    assert figures["c_ms_per_image"] > 0 and figures["torch_fp32_batch1_ms_per_image"] > 0
    assert figures["c_mcu_kernels_ms_per_image"] > 0  # the host program on the microcontrollers' kernels, timed too
    if shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"):
        assert figures["m4_instructions_per_inference"] > 0 and figures["membrane_state_bytes"] == 6272


@pytest.mark.slow
def test_export_memory_reports_the_planned_and_measured_sizes(tmp_path):
    figures_file = tmp_path / "memory.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "export_memory.py"), "fmnist_1w2u", "cifar10_1w2u",
                             "--json", str(figures_file)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    fmnist, resnet = json.loads(figures_file.read_text())
    assert fmnist["membrane_state_bytes"] == 6272 and fmnist["spike_arena_bytes"] == (784 + 588) * 4
    assert resnet["model_bytes"] > 256 * 1024 and resnet["cortex_m4"] == "too large for the part"
    if shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"):
        assert fmnist["flash_bytes"] <= 128 * 1024 and fmnist["ram_bytes"] <= 32 * 1024
