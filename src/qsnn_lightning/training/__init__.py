"""Training with Lightning: the experiment config, the LightningModule, callbacks, the run driver,
checkpoints and sweeps. Import its modules directly (``qsnn_lightning.training.train``)."""
