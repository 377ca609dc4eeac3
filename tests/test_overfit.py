import pytest
import torch

from qsnn_lightning.snn.backbones import build_model
from qsnn_lightning.snn.losses import WSDRLoss
from qsnn_lightning.snn.neurons import spiking_layers
from qsnn_lightning.snn.spec import ModelSpec

pytestmark = pytest.mark.slow  # every test here trains, builds, benchmarks or measures a process


def test_small_qsnn_overfits_a_fixed_batch_through_all_quantizers():
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="fmnistnet", bits="1w2u", timesteps=2), input_shape=(1, 28, 28), num_classes=10)
    images = torch.rand(32, 1, 28, 28)
    labels = torch.arange(32) % 10
    loss_fn = WSDRLoss(lam=1e-3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        logits = model(images)
        parts = loss_fn(logits, labels, [layer.firing_rate for layer in spiking_layers(model)])
        optimizer.zero_grad()
        parts.total.backward()
        optimizer.step()
        losses.append(parts.total.item())
        accuracy = (logits.mean(0).argmax(1) == labels).float().mean().item()
        if accuracy == 1.0 and len(losses) > 20:
            break
    assert accuracy == 1.0
    assert losses[-1] < 0.25 * losses[0]
