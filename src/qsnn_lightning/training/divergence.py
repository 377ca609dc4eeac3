"""Stop a run whose weights or BatchNorm statistics stop being finite numbers, naming the tensor,
before a checkpoint with them is saved (the last finite checkpoint stays the one to resume from)."""

from lightning.pytorch.callbacks import Callback

from ..checkpoint import non_finite
from ..errors import DivergedError


class FiniteWeights(Callback):
    """After every optimizer step: every parameter and buffer of the model is finite, or the run
    stops with a :class:`DivergedError` (one line, exit status 2) that names the first one that is not."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Check the weights the step just updated (one device sync when all are finite)."""
        if broken := non_finite(pl_module.model.state_dict()):
            raise DivergedError(
                f"training diverged at epoch {trainer.current_epoch}, step {trainer.global_step}: {broken}; "
                "lower optim.lr; checkpoints saved before this step are kept (resume from one with ckpt_path=...)"
            )
