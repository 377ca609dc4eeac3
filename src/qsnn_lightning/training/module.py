"""``QSNNClassifier``: a LightningModule around any registered backbone and the WS-DR loss."""

from typing import Any

import lightning as L
import torch
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from ..snn.backbones import build_model
from ..snn.footprint import model_bits
from ..snn.layers import QConv2d, QLinear
from ..snn.losses import LossParts, WSDRLoss
from ..snn.neurons import spiking_layers
from ..snn.spec import ModelSpec
from .epoch_test import EPOCH_TEST

TOP5_MIN_CLASSES = 11  # top-5 accuracy is reported where there are more than 10 classes
EPOCH_TEST_SUFFIX = "_epoch"  # test/acc_epoch: the test split read by the validation loop (test_every_epoch)
EPOCH_TEST_BEST_KEY = "epoch_test_best"  # the checkpoint entry of QSNNClassifier.epoch_test_best


class QSNNClassifier(L.LightningModule):
    """Train, validate and test a Q-SNN classifier with one ``model_step``.

    The backbone returns per-step logits ``[T, B, classes]``; the loss is Eq. 16 on them and the
    prediction is their time mean. Every forward pass starts from a cleared neuron state.
    Metric keys: ``train/loss``, ``train/loss_ce``, ``train/loss_spike``, ``train/acc``,
    ``val/loss``, ``val/acc``, ``val/acc_best``, ``test/loss``, ``test/acc`` (and ``*/acc_top5``
    with more than 10 classes), and ``*/firing_rate`` (mean f_l over spiking layers, averaged
    across ranks). The test split read by the validation loop (``test_every_epoch``, dataloader
    :data:`~qsnn_lightning.training.epoch_test.EPOCH_TEST`) logs ``test/loss_epoch``,
    ``test/acc_epoch``, ``test/acc_top5_epoch`` and ``test/firing_rate_epoch``; the best
    ``test/acc_epoch`` and its epoch are :attr:`epoch_test_best`, kept in checkpoints.

    ``spec`` is the model (:class:`~qsnn_lightning.snn.spec.ModelSpec`, the config's ``model``
    section); the hyperparameters hold it once, as a plain dict under ``spec`` (a checkpoint is
    read with ``weights_only=True``, which loads no dataclass), and ``self.spec`` is the value.
    ``compile`` and ``channels_last`` are the ``speed`` options: how the same network executes
    (``compile``: torch.compile'd neuron and quantizer kernels; ``channels_last``: conv weights
    and static input images NHWC). ``activation_memory`` is ``speed.activation_memory`` as the run
    chose it: ``"full"`` or ``"lean"`` (training steps recompute each segment in the backward
    pass: the same gradients, less memory; snn/lean.py). ``experiment`` is the full experiment configuration, stored in
    the checkpoint so that ``qsnn test`` and the exporter can rebuild the run.
    """

    def __init__(
        self,
        spec: "ModelSpec | dict" = ModelSpec(),
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        compile: bool = False,
        channels_last: bool = False,
        activation_memory: str = "full",
        lam: float = 1e-3,
        spike_reduction: str = "sum",
        optimizer: str = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        experiment: dict | None = None,
    ):
        super().__init__()
        self.spec = ModelSpec.coerce(spec)
        spec = self.spec.to_dict()  # what save_hyperparameters reads from this frame: plain values
        self.save_hyperparameters()
        self.model = build_model(
            self.spec, num_classes=num_classes, input_shape=tuple(input_shape), compile=compile,
            channels_last=channels_last, activation_memory=activation_memory,
        )
        self.loss_fn = WSDRLoss(lam, spike_reduction)
        self.train_metrics = self._accuracy_metrics(num_classes, "train/")
        self.val_metrics = self._accuracy_metrics(num_classes, "val/")
        self.test_metrics = self._accuracy_metrics(num_classes, "test/")
        self.epoch_test_metrics = self._accuracy_metrics(num_classes, "test/", EPOCH_TEST_SUFFIX)
        self.val_acc_best = MaxMetric()
        self.epoch_test_best: dict | None = None  # {"acc": best test/acc_epoch, "epoch": the epoch it was logged in}

    @staticmethod
    def _accuracy_metrics(num_classes: int, prefix: str, postfix: str = "") -> MetricCollection:
        metrics = {"acc": MulticlassAccuracy(num_classes, average="micro")}
        if num_classes >= TOP5_MIN_CLASSES:
            metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        return MetricCollection(metrics, prefix=prefix, postfix=postfix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step logits ``[T, B, classes]``."""
        return self.model(x)

    def firing_rates(self) -> list[torch.Tensor]:
        """f_l of every spiking layer from the last forward pass, in forward order (Eq. 15)."""
        return [layer.firing_rate for layer in spiking_layers(self.model)]

    def model_step(self, batch) -> tuple[LossParts, torch.Tensor, torch.Tensor]:
        """``(loss parts, logits averaged over time [B, classes], targets)`` of one batch; the loss is Eq. 16."""
        inputs, targets = batch
        if self.hparams.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        logits = self(inputs)
        parts = self.loss_fn(logits, targets, self.firing_rates())
        return parts, logits.mean(0), targets

    def _shared_step(self, split: str, batch, metrics: MetricCollection, suffix: str = "") -> torch.Tensor:
        parts, scores, targets = self.model_step(batch)
        metrics.update(scores, targets)
        on_step = split == "train"
        # add_dataloader_idx=False: with the epoch test the validation loop has two dataloaders, whose keys differ
        log = {"on_epoch": True, "add_dataloader_idx": False}
        self.log(f"{split}/loss{suffix}", parts.total, on_step=on_step, prog_bar=True, sync_dist=not on_step, **log)
        if split == "train":
            self.log("train/loss_ce", parts.cross_entropy, on_step=True, **log)
            self.log("train/loss_spike", parts.spike, on_step=True, **log)
        self.log_dict(metrics, on_step=False, prog_bar=True, **log)
        mean_rate = torch.stack(self.firing_rates()).detach().mean()
        self.log(f"{split}/firing_rate{suffix}", mean_rate, on_step=False, sync_dist=True, **log)
        return parts.total

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """The WS-DR loss of a training batch (Eq. 16), after logging it, its parts, accuracy and firing rate."""
        return self._shared_step("train", batch, self.train_metrics)

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Log loss, accuracy and firing rate of a validation batch, or with the ``_epoch`` suffix of a test batch
        (dataloader :data:`EPOCH_TEST`)."""
        if dataloader_idx == EPOCH_TEST:
            self._shared_step("test", batch, self.epoch_test_metrics, EPOCH_TEST_SUFFIX)
        else:
            self._shared_step("val", batch, self.val_metrics)

    def test_step(self, batch, batch_idx: int) -> None:
        """Log loss, accuracy and firing rate of a test batch."""
        self._shared_step("test", batch, self.test_metrics)

    def on_validation_epoch_end(self) -> None:
        """Update ``val/acc_best`` and :attr:`epoch_test_best` with this epoch's accuracies (not after the sanity check)."""
        if self.trainer.sanity_checking:
            return
        if self.val_metrics["acc"].update_called:  # not with val_fraction=0
            self.val_acc_best(self.val_metrics["acc"].compute())
            self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)
        if self.epoch_test_metrics["acc"].update_called:
            accuracy = float(self.epoch_test_metrics["acc"].compute())
            if self.epoch_test_best is None or accuracy > self.epoch_test_best["acc"]:
                self.epoch_test_best = {"acc": accuracy, "epoch": self.current_epoch}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store :attr:`epoch_test_best` in the checkpoint."""
        checkpoint[EPOCH_TEST_BEST_KEY] = self.epoch_test_best

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore :attr:`epoch_test_best` from the checkpoint (None in one saved without it)."""
        self.epoch_test_best = checkpoint.get(EPOCH_TEST_BEST_KEY)  # a resumed run keeps the best of its earlier epochs

    def on_train_start(self) -> None:
        """Reset ``val/acc_best``, so that the sanity check's accuracy does not count."""
        self.val_acc_best.reset()  # sanity checking must not count

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD (momentum) or Adam with cosine decay over ``max_epochs``; weight decay on conv and
        linear weights only (not on BatchNorm parameters or biases)."""
        decayed = [m.weight for m in self.model.modules() if isinstance(m, (QConv2d, QLinear))]
        decayed_ids = {id(p) for p in decayed}
        others = [p for p in self.model.parameters() if id(p) not in decayed_ids]
        groups = [
            {"params": decayed, "weight_decay": self.hparams.weight_decay},
            {"params": others, "weight_decay": 0.0},
        ]
        if self.hparams.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=self.hparams.lr, momentum=self.hparams.momentum)
        else:
            optimizer = torch.optim.Adam(groups, lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def model_megabytes(self) -> float:
        """Model size as Figure 3 counts it (quantized weights at their bits, the rest at 32)."""
        return model_bits(self.model) / 8 / 1e6
