import pytest
import torch
from torch.nn import functional as F

from qsnn_lightning.snn.losses import WSDRLoss, spike_regularization


def test_spike_loss_excludes_first_and_last_layer():
    rates = [torch.tensor(r) for r in (0.1, 0.2, 0.4, 0.9)]
    # hidden layers 0.2 and 0.4: (0.2-0.5)^2 + (0.4-0.5)^2 = 0.09 + 0.01
    assert spike_regularization(rates).item() == pytest.approx(0.10)
    assert spike_regularization(rates, "mean").item() == pytest.approx(0.05)
    assert spike_regularization(rates[:2]).item() == 0.0
    with pytest.raises(ValueError, match="reduction"):
        spike_regularization(rates, "max")


def test_total_loss_is_time_mean_cross_entropy_plus_lambda_spike_term():
    logits = torch.tensor([[[2.0, 0.0, -1.0]], [[0.0, 1.0, 0.0]]])  # T = 2, B = 1
    targets = torch.tensor([0])
    rates = [torch.tensor(0.5), torch.tensor(0.0, requires_grad=True), torch.tensor(0.3)]
    parts = WSDRLoss(lam=0.1)(logits, targets, rates)
    ce_0 = -F.log_softmax(logits[0, 0], 0)[0]
    ce_1 = -F.log_softmax(logits[1, 0], 0)[0]
    assert parts.cross_entropy.item() == pytest.approx(((ce_0 + ce_1) / 2).item())
    assert parts.spike.item() == pytest.approx(0.25)
    assert parts.total.item() == pytest.approx(parts.cross_entropy.item() + 0.025)
    parts.total.backward()
    assert rates[1].grad.item() == pytest.approx(0.1 * 2 * (0.0 - 0.5))  # raises the firing rate


def test_lambda_zero_is_plain_cross_entropy():
    logits = torch.randn(3, 4, 5)
    targets = torch.randint(0, 5, (4,))
    parts = WSDRLoss(lam=0.0)(logits, targets, [torch.tensor(0.1)] * 3)
    assert parts.total.item() == pytest.approx(parts.cross_entropy.item())
