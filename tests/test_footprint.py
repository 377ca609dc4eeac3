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
        (["--frobnicate"], "unrecognized arguments"),
    ],
)
def test_cli_bad_arguments_give_one_line_and_status_2(args, needle, capsys):
    assert main(["footprint", *args]) == 2
    error = capsys.readouterr().err
    assert needle in error and len(error.strip().splitlines()) == 1


def test_cli_bad_argument_in_a_real_process():
    result = run_qsnn("footprint", "--bits", "1w33u")
    assert result.returncode == 2
    assert result.stderr.startswith("qsnn: error: bit width '1w33u'")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
