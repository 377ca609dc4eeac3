import pytest
import torch

from qsnn_lightning.snn.neurons import LIF, reset_states, spiking_layers
from qsnn_lightning.snn.spec import NeuronSpec


def test_lif_trace_over_four_steps_with_spikes_and_resets():
    # tau = 0.5, theta = 1: u = 0.6, 0.9, 1.05 (spike, reset to 0), 1.5 (spike, reset)
    lif = LIF()
    x = torch.tensor([0.6, 0.6, 0.6, 1.5]).view(4, 1, 1)
    assert lif(x).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    assert lif.v.item() == 0.0
    assert lif.firing_rate.item() == 0.5


def test_lif_leak_without_spikes():
    lif = LIF(NeuronSpec(tau=0.5))
    lif(torch.tensor([0.8, 0.0, 0.0, 0.2]).view(4, 1))
    assert lif.v.item() == pytest.approx(0.8 / 8 + 0.2)


# Two neurons, k = 2, training mode (alpha_u = the layer's max |u| of the stored state at each step):
#   t0: u = (0.9, 0.4)     no spike; alpha 0.9:   stored (0.9, round(0.44) = 0)
#   t1: u = (0.75, 0.7)    no spike; alpha 0.75:  stored (0.75, round(0.93) = 1 -> 0.75)
#   t2: u = (0.475, 0.975) no spike; alpha 0.975: stored (round(0.49) = 0, 0.975)
#   t3: u = (0, 1.0875)    neuron B spikes
# In full precision neuron B spikes at t2 instead (0.45 + 0.6 = 1.05).
INPUTS = torch.tensor([[0.9, 0.4], [0.3, 0.7], [0.1, 0.6], [0.0, 0.6]]).view(4, 1, 2)


def test_lif_with_2_bit_membrane_quantizes_the_stored_state():
    lif = LIF(NeuronSpec(membrane_bits=2)).train()
    spikes = lif(INPUTS)
    assert spikes.view(4, 2).tolist() == [[0, 0], [0, 0], [0, 0], [0, 1]]
    assert lif.v.view(2).tolist() == [0.0, 0.0]
    full = LIF().train()(INPUTS)
    assert full.view(4, 2).tolist() == [[0, 0], [0, 0], [0, 1], [0, 0]]


def test_quantizing_before_the_spike_is_available_for_ablation():
    # Algorithm 1's order: the max neuron keeps its value, smaller ones round to 0 at k = 2
    lif = LIF(NeuronSpec(membrane_bits=2, quantize_before_spike=True)).train()
    x = torch.tensor([[0.5, 0.98, 0.3]]).view(1, 1, 3)
    lif(x)
    assert lif.v.view(3).tolist() == pytest.approx([0.98, 0.98, 0.0])


def test_state_is_lazy_carried_and_reset():
    torch.manual_seed(0)
    lif = LIF()
    assert lif.v is None
    x = torch.rand(6, 3, 5) * 1.5
    whole = lif(x)
    reset_states(lif)
    assert lif.v is None and lif.firing_rate is None
    first, second = lif(x[:3]), lif(x[3:])  # streaming: state carried across calls
    assert torch.equal(torch.cat([first, second]), whole)
    with pytest.raises(RuntimeError, match="reset_states"):
        lif(torch.rand(2, 4, 5))


def test_surrogate_gradient_flows_through_time():
    lif = LIF()
    x = torch.tensor([0.7, 0.5]).view(2, 1).requires_grad_()
    lif(x)[1].sum().backward()
    # u0 = 0.7, s0 = 0 with surrogate slope 1 - 0.3 = 0.7; the reset v0 = u0 (1 - s0) gives
    # d v0/d u0 = (1 - s0) - u0 * 0.7 = 0.51. u1 = 0.5 v0 + x1 = 0.85, slope 1 - 0.15 = 0.85:
    # d s1/d x1 = 0.85, d s1/d x0 = 0.85 * 0.5 * 0.51
    assert torch.allclose(x.grad.flatten(), torch.tensor([0.85 * 0.5 * 0.51, 0.85]))


def test_spiking_layers_in_registration_order():
    model = torch.nn.Sequential(LIF(NeuronSpec(theta=1.0)), torch.nn.Identity(), LIF(NeuronSpec(theta=2.0)))
    assert [layer.theta for layer in spiking_layers(model)] == [1.0, 2.0]
