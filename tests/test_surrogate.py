import torch

from qsnn_lightning.snn.surrogate import spike


def test_forward_is_heaviside_with_spike_at_threshold():
    x = torch.tensor([-0.5, -1e-6, 0.0, 1e-6, 2.0])
    assert spike(x).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_gradient_is_the_triangle_of_eq5():
    # Eq. 5: ds/du = max(0, beta - |u - theta|), with x = u - theta.
    x = torch.tensor([-1.5, -0.5, 0.0, 0.25, 0.9, 1.0, 3.0], requires_grad=True)
    spike(x, 1.0).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.0, 0.5, 1.0, 0.75, 0.1, 0.0, 0.0]))


def test_gradient_scales_with_beta_and_upstream_gradient():
    x = torch.tensor([-0.25, 0.0, 0.4, 0.6], requires_grad=True)
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0])
    (spike(x, 0.5) * upstream).sum().backward()
    # beta = 0.5: [0.25, 0.5, 0.1, 0] times the upstream gradient
    assert torch.allclose(x.grad, torch.tensor([0.25, 1.0, 0.3, 0.0]))
