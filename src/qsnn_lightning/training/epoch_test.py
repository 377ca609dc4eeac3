"""``test_every_epoch``: the test split evaluated at every validation check, as a second
validation dataloader, so the test accuracy of every epoch's weights is logged (``test/acc_epoch``)
beside, never mixed with, the validation metrics.

The authors' release reports the best of these per-epoch test accuracies; the run reports it as
``test_acc_best_epoch``, labelled as such, beside the accuracy of the weights it keeps.
"""

import lightning as L

VALIDATION, EPOCH_TEST = 0, 1  # dataloader_idx of the validation split and of the test split in the validation loop


class WithEpochTest(L.LightningDataModule):
    """A DataModule whose validation loop reads ``[validation split, test split]``; every other
    hook is the wrapped DataModule's. An empty validation split (``val_fraction=0``) is skipped
    by Lightning; the test split keeps index :data:`EPOCH_TEST`."""

    def __init__(self, data: L.LightningDataModule):
        super().__init__()
        self.data = data
        self.save_hyperparameters(data.hparams)  # logged with the module's, as the wrapped DataModule's were

    def prepare_data(self) -> None:
        """Run the wrapped DataModule's ``prepare_data``."""
        self.data.prepare_data()

    def setup(self, stage: str) -> None:
        """Set up the wrapped DataModule, every split for ``"fit"`` and ``"validate"`` (the validation loop reads the test split)."""
        self.data.setup(None if stage in ("fit", "validate") else stage)  # the validation loop reads the test split too

    def teardown(self, stage: str) -> None:
        """Run the wrapped DataModule's ``teardown``."""
        self.data.teardown(stage)

    def train_dataloader(self):
        """The wrapped DataModule's training loader."""
        return self.data.train_dataloader()

    def val_dataloader(self):
        """``[validation loader, test loader]``, at dataloader indices :data:`VALIDATION` and :data:`EPOCH_TEST`."""
        return [self.data.val_dataloader(), self.data.test_dataloader()]

    def test_dataloader(self):
        """The wrapped DataModule's test loader."""
        return self.data.test_dataloader()
