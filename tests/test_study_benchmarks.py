"""The studies' numbers: stored-level statistics from membrane_levels.jsonl,
benchmarks/membrane_scales.py and benchmarks/wsdr_ablation.py over sweep summaries in the real format
(hand-computed values)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qsnn_lightning.training.analysis import stored_level_statistics
from qsnn_lightning.training.sweep import SUMMARY, write_summary

pytestmark = pytest.mark.slow  # every test here trains, builds, benchmarks or measures a process

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "membrane_scales.py"


def test_stored_level_statistics_read_the_last_epoch_of_every_layer(tmp_path):
    lines = [
        {"epoch": 0, "layers": {"a": [0, 10, 0]}},
        # k = 2 layer: 2 of 10 stored membranes non-zero; k = 4 layer (15 levels, level 0 at index 7): 5 of 10
        {"epoch": 1, "layers": {"a": [1, 8, 1], "b": [0] * 6 + [5, 5, 0] + [0] * 6}},
    ]
    (tmp_path / "membrane_levels.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    stats = stored_level_statistics(tmp_path)
    assert stats["stored_nonzero"] == pytest.approx(7 / 20)
    # entropies: -(0.1 ln 0.1 * 2 + 0.8 ln 0.8) = 0.639; ln 2 = 0.693
    assert stats["level_entropy"] == pytest.approx((0.639031 + 0.693147) / 2, abs=1e-6)
    assert stored_level_statistics(tmp_path / "none") == {"stored_nonzero": None, "level_entropy": None}


def test_membrane_scales_benchmark_prints_means_and_differences_to_the_paper_scale(tmp_path):
    rows = [
        {"model.membrane_scale": scale, "model.bits": "1w2u", "seed": seed, "k": 2, "test_acc": acc,
         "val_acc_best": acc, "hidden_firing_rate": 0.2, "stored_nonzero": nonzero, "level_entropy": 0.5, "run_dir": "x"}
        for scale, seed, acc, nonzero in (("max", 1, 0.80, 0.002), ("max", 2, 0.82, 0.004),
                                          ("threshold", 1, 0.83, 0.2), ("threshold", 2, 0.84, 0.3))
    ]
    (tmp_path / "membrane_scale").mkdir()
    write_summary(rows, tmp_path / "membrane_scale" / SUMMARY)
    out = subprocess.run([sys.executable, str(SCRIPT), "--root", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert "| 2 | max | 80.00 / 82.00 | 81.00 | +0.00 | 0.30% | 0.500 |" in out
    assert "| 2 | threshold | 83.00 / 84.00 | 83.50 | +2.50 | 25.00% | 0.500 |" in out
    assert "membrane_scale_events: no" in out


def test_wsdr_ablation_prints_the_four_variants_with_per_layer_rates(tmp_path):
    rows = []
    for standardize, lam, accuracies, rate in (("layer", 1e-3, (0.90, 0.92), 0.3), ("none", 0.0, (0.88, 0.88), 0.2)):
        for seed, accuracy in zip((1, 2), accuracies):
            run_dir = tmp_path / f"{standardize}{lam}{seed}"
            run_dir.mkdir()
            rates = {"stem_lif": 0.25, "features.2": rate + 0.01 * seed, "features.7": 0.1}
            (run_dir / "results.json").write_text(json.dumps({"val_firing_rates": rates}))
            rows.append({"model.standardize": standardize, "loss.lam": lam, "seed": seed, "k": 2, "test_acc": accuracy,
                         "val_acc_best": accuracy, "hidden_firing_rate": rate, "stored_nonzero": 0.4, "level_entropy": 0.9,
                         "run_dir": str(run_dir)})
    (tmp_path / "wsdr").mkdir()
    write_summary(rows, tmp_path / "wsdr" / SUMMARY)
    script = SCRIPT.with_name("wsdr_ablation.py")
    out = subprocess.run([sys.executable, str(script), "--root", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert "| variant | test accuracy per seed | mean | vs plain | stem_lif | features.2 | features.7 |" in out
    assert "| WS-DR (Q-SNN + weight + spike regulation) | 90.00 / 92.00 | 91.00 | +3.00 | 0.250 | 0.315 | 0.100 |" in out
    assert "| plain Q-SNN | 88.00 / 88.00 | 88.00 | +0.00 | 0.250 | 0.215 | 0.100 |" in out
