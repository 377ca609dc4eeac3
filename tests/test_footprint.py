import json
import subprocess
import sys
from pathlib import Path

import pytest

from qsnn_lightning.cli import main
from qsnn_lightning.data.info import dataset_info
from qsnn_lightning.snn.footprint import footprint_table
from qsnn_lightning.snn.precision import Precision

QSNN = str(Path(sys.executable).with_name("qsnn"))

# The paper's Table 2 (CIFAR-10 inputs): MB for (batch, bits) x (ResNet19, VGG16, VGGSNN).
TABLE_2 = {
    (1, "32w32u"): (50.80, 59.16, 37.44),
    (1, "1w8u"): (1.75, 1.96, 1.31),
    (1, "1w4u"): (1.68, 1.93, 1.25),
    (1, "1w2u"): (1.65, 1.91, 1.21),
    (64, "32w32u"): (83.83, 75.67, 70.47),
    (64, "1w8u"): (10.0, 6.09, 9.57),
    (64, "1w4u"): (5.81, 3.99, 5.38),
    (64, "1w2u"): (3.72, 2.94, 3.28),
    (256, "32w32u"): (184.49, 126.01, 171.13),
    (256, "1w8u"): (35.17, 18.67, 34.74),
    (256, "1w4u"): (18.40, 10.28, 17.96),
    (256, "1w2u"): (10.01, 6.09, 9.57),
}
ARCHS = ("resnet19", "vgg16", "vggsnn")


@pytest.fixture(scope="module")
def table_2_rows():
    info = dataset_info("cifar10")
    precisions = [Precision.parse(bits) for bits in ("32w32u", "1w8u", "1w4u", "1w2u")]
    rows = footprint_table(list(ARCHS), info.input_shape, info.num_classes, precisions, [1, 64, 256])
    return {(row.arch, row.batch, row.bits): row for row in rows}


@pytest.mark.parametrize("key", sorted(TABLE_2))
def test_every_table_2_entry_within_3_percent(table_2_rows, key):
    batch, bits = key
    for arch, paper in zip(ARCHS, TABLE_2[key]):
        ours = table_2_rows[(arch, batch, bits)].megabytes
        assert ours == pytest.approx(paper, rel=0.03), (arch, batch, bits, ours, paper)


def test_resnet19_exact_points_and_model_size(table_2_rows):
    assert table_2_rows[("resnet19", 1, "32w32u")].megabytes == pytest.approx(50.80, abs=0.005)
    assert table_2_rows[("resnet19", 64, "1w2u")].megabytes == pytest.approx(3.72, abs=0.005)
    assert table_2_rows[("resnet19", 1, "1w2u")].model_megabytes == pytest.approx(1.62, abs=0.005)  # Fig. 3
    assert table_2_rows[("resnet19", 1, "32w32u")].reduction_pct == 0.0


def run_qsnn(*args):
    return subprocess.run([QSNN, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_json_rows():
    result = run_qsnn("footprint", "--arch", "fmnistnet", "--dataset", "fashionmnist",
                      "--bits", "32w32u,1w2u,1w3u", "--batch", "1,8", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 6
    assert set(rows[0]) == {"arch", "bits", "batch", "megabytes", "reduction_pct", "model_megabytes"}
    by_key = {(row["bits"], row["batch"]): row for row in rows}
    # k = 3 sits between 2 and 32 bits; the membrane term grows with the batch
    assert by_key[("1w2u", 8)]["megabytes"] < by_key[("1w3u", 8)]["megabytes"] < by_key[("32w32u", 8)]["megabytes"]
    assert by_key[("1w2u", 8)]["megabytes"] > by_key[("1w2u", 1)]["megabytes"]


@pytest.mark.slow
def test_cli_prints_the_table():
    result = run_qsnn("footprint", "--arch", "fmnistnet", "--dataset", "fashionmnist", "--bits", "1w2u", "--batch", "1")
    assert result.returncode == 0 and "fmnistnet" in result.stdout and "1w2u" in result.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--arch", "resnet20"], "unknown architecture resnet20"),
        (["--bits", "1w0u"], "membrane bits"),
        (["--bits", "1w33u"], "membrane bits"),
        (["--bits", "3w"], "'3w'"),
        (["--dataset", "mnist2"], "unknown dataset"),
        (["--batch", "0"], "--batch"),
        (["--training", "--timesteps", "0"], "--timesteps"),
        (["--training", "--timesteps", "two"], "--timesteps"),
        (["--frobnicate"], "unrecognized arguments"),
    ],
)
def test_cli_bad_arguments_give_one_line_and_status_2(args, needle, capsys):
    assert main(["footprint", *args]) == 2
    error = capsys.readouterr().err
    assert needle in error and len(error.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_bad_argument_in_a_real_process():
    result = run_qsnn("footprint", "--bits", "1w33u")
    assert result.returncode == 2
    assert result.stderr.startswith("qsnn: error: bit width '1w33u'")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("arch, shape, inputs", [("fmnistnet", (1, 28, 28), (2, 1, 28, 28)), ("vggsnn", (2, 32, 32), (2, 4, 2, 32, 32))])
@pytest.mark.parametrize("mode", ["full", "lean"])
def test_a_training_steps_peak_on_fake_tensors_is_the_real_one(arch, shape, inputs, mode):
    """The fake-tensor peak (no memory used) is the one tracked on real tensors, storage by
    storage, plus the state: weights, gradients and SGD's momentum. Measured exceptions: on
    VGGSNN's full path the fake tensors count 8 MB of 52 MB more (an upper bound, never less)."""
    import torch

    from qsnn_lightning.snn.backbones import build_model
    from qsnn_lightning.snn.losses import WSDRLoss
    from qsnn_lightning.snn.neurons import spiking_layers
    from qsnn_lightning.snn.spec import ModelSpec
    from qsnn_lightning.snn.training_memory import peak_activation_bytes, training_step_bytes

    model = build_model(ModelSpec(arch=arch, bits="1w4u", timesteps=4), num_classes=5, input_shape=shape,
                        activation_memory=mode).train()

    def step():
        logits = model(torch.zeros(inputs))
        return WSDRLoss()(logits, torch.zeros(inputs[0], dtype=torch.long), [lif.firing_rate for lif in spiking_layers(model)]).total

    real = peak_activation_bytes(step, model)
    model.zero_grad(set_to_none=True)  # as a fresh model: gradients accumulated into tensors differ from new ones
    fake = training_step_bytes(model, torch.Size(inputs)) - 3 * sum(p.numel() * 4 for p in model.parameters())
    if (arch, mode) == ("vggsnn", "full"):
        assert real <= fake
    else:
        assert fake == real


def test_batch_statistics_of_fake_tensors_allocate_nothing():
    """The memory estimate's BatchNorm statistics on a fake 512 GB input: two fake per-channel
    tensors, computed from shapes alone (without a Meta kernel torch runs the op on real zeros)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    from qsnn_lightning.snn import training_memory  # noqa: F401  (registers the Meta kernel)
    from qsnn_lightning.snn.layers import BatchNorm, batch_statistics

    bn = BatchNorm(128)
    with FakeTensorMode(allow_non_fake_inputs=True):
        mean, var = batch_statistics(bn, torch.empty(1000, 128, 1000, 1000))
    assert all(isinstance(t, FakeTensor) and t.shape == (128,) and t.dtype == torch.float32 for t in (mean, var))


@pytest.mark.slow
def test_cli_training_memory_rows():
    """``--training``: both paths per (arch, bits, batch), growing with the batch; on DVS-CIFAR10's
    frames at T = 10 and batch 16 the lean path needs less (at batch 2 its own overhead weighs more)."""
    result = run_qsnn("footprint", "--training", "--arch", "vggsnn", "--dataset", "dvscifar10", "--bits", "1w2u,32w32u",
                      "--batch", "2,16", "--timesteps", "10", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(row["bits"], row["batch"]): row for row in json.loads(result.stdout)}
    assert set(rows) == {("1w2u", 2), ("1w2u", 16), ("32w32u", 2), ("32w32u", 16)}
    assert all(row["timesteps"] == 10 and row["lean_gb"] > 0 for row in rows.values())
    assert all(rows[(bits, 16)]["lean_gb"] < rows[(bits, 16)]["full_gb"] for bits in ("1w2u", "32w32u"))
    assert all(rows[(bits, 16)][key] > rows[(bits, 2)][key] for bits in ("1w2u", "32w32u") for key in ("full_gb", "lean_gb"))
    table = run_qsnn("footprint", "--training", "--arch", "fmnistnet", "--dataset", "fashionmnist", "--bits", "1w2u", "--batch", "2")
    assert table.returncode == 0 and "full / lean" in table.stdout and "fmnistnet" in table.stdout
