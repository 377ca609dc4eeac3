"""Training throughput with and without the monitors (SpikeMonitor, WeightSignMonitor,
MembraneLevelMonitor, DistributionFigure), measured side by side in one run.

    python benchmarks/monitor_overhead.py [--experiment fmnist_1w2u] [--batches 60] [--repeats 2]

Each configuration trains the same experiment for ``--batches`` training batches and one
validation batch (so the epoch-end monitors run once per pass); the runs alternate
(``--repeats`` times each) and the best images/s of each is compared.
"""

import argparse
import tempfile
import time

import lightning as L

from qsnn_lightning.data.modules import make_datamodule
from qsnn_lightning.training.build import make_module
from qsnn_lightning.training.callbacks import default_monitors
from qsnn_lightning.training.config import load_config


def images_per_second(cfg, monitors: bool, batches: int) -> float:
    L.seed_everything(cfg.seed)
    datamodule = make_datamodule(cfg)
    module = make_module(cfg, datamodule)
    callbacks = default_monitors() if monitors else []
    with tempfile.TemporaryDirectory() as scratch:
        trainer = L.Trainer(
            max_epochs=1, limit_train_batches=batches, limit_val_batches=1, num_sanity_val_steps=0,
            callbacks=callbacks, logger=L.pytorch.loggers.CSVLogger(scratch), enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", default_root_dir=scratch,
        )
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        elapsed = time.perf_counter() - start
    return batches * cfg.data.batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="fmnist_1w2u")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cfg = load_config(args.experiment)
    best = {False: 0.0, True: 0.0}
    for _ in range(args.repeats):
        for monitors in (False, True):
            best[monitors] = max(best[monitors], images_per_second(cfg, monitors, args.batches))
    print(f"{args.experiment}: {best[False]:.1f} images/s without monitors, {best[True]:.1f} with; "
          f"ratio with/without {best[True] / best[False]:.3f}")


if __name__ == "__main__":
    main()
