import pytest
import torch

from qsnn_lightning.snn.precision import Precision
from qsnn_lightning.snn.quant import BinaryWeight, FullPrecisionWeight, IntWeight, MembraneQuant, binarize, binarize_backward


def quantize_with_alpha(bits, u, alpha):
    quant = MembraneQuant(bits).eval()
    quant.running_alpha.fill_(alpha)
    quant.num_steps_tracked.fill_(1)
    return quant(u)


# Eq. 8: alpha/n * round(n * clip(u/alpha, -1, 1)), n = 2^(k-1) - 1, torch.round = half to even.
def test_membrane_k2_has_three_levels():
    u = torch.tensor([-1.0, -0.6, -0.5, -0.2, 0.0, 0.3, 0.5, 0.51, 1.0])
    expected = torch.tensor([-1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    assert torch.equal(quantize_with_alpha(2, u, 1.0), expected)


def test_membrane_k4_seven_levels_each_side():
    u = torch.tensor([0.1, -0.5, 0.9, -1.0, 0.25])  # n = 7: 7u = 0.7, -3.5, 6.3, -7, 1.75
    expected = torch.tensor([1.0, -4.0, 6.0, -7.0, 2.0]) / 7
    assert torch.allclose(quantize_with_alpha(4, u, 1.0), expected)


def test_membrane_k8_grid_with_scale():
    u = torch.tensor([0.3, -0.7, 1.2])  # alpha = 2, n = 127: 127*u/2 = 19.05, -44.45, 76.2
    expected = torch.tensor([19.0, -44.0, 76.0]) * 2 / 127
    assert torch.allclose(quantize_with_alpha(8, u, 2.0), expected)


def test_membrane_clips_outside_alpha_and_is_sign_symmetric():
    u = torch.tensor([3.0, -5.0, 0.4, 0.8])
    q = quantize_with_alpha(4, u, 1.0)
    assert q[0] == 1.0 and q[1] == -1.0
    assert torch.equal(quantize_with_alpha(4, -u, 1.0), -q)


def test_training_scale_is_the_step_max_and_running_scale_is_calibrated():
    quant = MembraneQuant(2, momentum=0.1).train()
    q = quant(torch.tensor([0.5, -2.0, 1.2]))  # alpha = max|u| = 2: round(0.25, -1, 0.6) = 0, -1, 1
    assert torch.equal(q, torch.tensor([0.0, -2.0, 2.0]))
    assert quant.running_alpha.item() == 2.0  # first step initializes the running scale
    quant(torch.tensor([4.0]))
    assert quant.running_alpha.item() == pytest.approx(2.0 + 0.1 * (4.0 - 2.0))
    quant.eval()
    # eval uses the calibrated 2.2 whatever the batch holds: 1.2/2.2 rounds to 1 at k = 2
    assert torch.allclose(quant(torch.tensor([1.2, 100.0])), torch.tensor([2.2, 2.2]))
    assert torch.allclose(quant(torch.tensor([1.2])), torch.tensor([2.2]))


def test_eval_before_calibration_falls_back_to_the_step_max():
    quant = MembraneQuant(2).eval()
    assert torch.equal(quant(torch.tensor([0.4, -1.0])), torch.tensor([0.0, -1.0]))
    assert quant.num_steps_tracked.item() == 0


def test_membrane_gradient_is_straight_through():
    u = torch.tensor([0.3, -0.8, 0.55], requires_grad=True)
    MembraneQuant(2).train()(u).sum().backward()
    assert torch.equal(u.grad, torch.ones(3))


def test_threshold_scale_is_theta_in_training_and_eval_and_tracks_nothing():
    # alpha_u = theta = 1.2, k = 2: u / 1.2 = 0.417, 0.508, -0.583, 0.917, -2.5 -> 0, 1, -1, 1, -1 (clipped)
    u = torch.tensor([0.5, 0.61, -0.7, 1.1, -3.0])
    expected = torch.tensor([0.0, 1.2, -1.2, 1.2, -1.2])
    quant = MembraneQuant(2, scale="threshold", theta=1.2)
    for mode in (True, False):
        assert torch.allclose(quant.train(mode)(u), expected)
    assert quant.num_steps_tracked.item() == 0 and quant.calibrated and quant.inference_alpha() == pytest.approx(1.2)


def test_tanh_scale_quantizes_tanh_u_with_its_step_max():
    # tanh: 0.291, -0.964, 0.762; alpha_u = tanh(2) = 0.964; ratios 0.302, -1, 0.790 -> 0, -1, 1
    quant = MembraneQuant(2, scale="tanh").train()
    alpha = torch.tanh(torch.tensor(2.0))
    assert torch.allclose(quant(torch.tensor([0.3, -2.0, 1.0])), torch.stack([0 * alpha, -alpha, alpha]))
    assert quant.running_alpha.item() == pytest.approx(alpha.item()) and quant.squash


def test_learned_scale_gradient_is_lsq():
    # alpha_u = 0.8, k = 2 (n = 1): u / alpha = 0.375, 0.625, -1.25 -> q = 0, 1, -1 (clipped)
    # dQ/dalpha = (q - u / alpha) / n = -0.375 + 0.375 + 0.25 = 0.25; LSQ scale 1/sqrt(N n) = 1/sqrt(4) (N = 4 per sample)
    quant = MembraneQuant(2, scale="learned", theta=1.0).train()
    quant.alpha.data.fill_(0.8)
    u = torch.tensor([[0.3, 0.5, -1.0, 0.0]], requires_grad=True)
    q = quant(u)
    assert torch.allclose(q, torch.tensor([[0.0, 0.8, -0.8, 0.0]]))
    q.sum().backward()
    assert quant.alpha.grad.item() == pytest.approx(0.25 / 2)
    assert torch.equal(u.grad, torch.ones_like(u))  # straight through, as for the other scales
    assert quant.num_steps_tracked.item() == 0 and quant.inference_alpha() == pytest.approx(0.8)


def test_learned_scale_starts_at_theta_and_unknown_scale_is_rejected():
    assert MembraneQuant(4, scale="learned", theta=0.7).alpha.item() == pytest.approx(0.7)
    assert MembraneQuant(32, scale="learned").alpha is None  # no membrane quantizer, no scale
    with pytest.raises(ValueError, match="membrane scale must be one of"):
        MembraneQuant(2, scale="median")


def test_membrane_off_at_32_bits_and_bad_k_rejected():
    u = torch.randn(10)
    assert torch.equal(MembraneQuant(32)(u), u)
    for bad in (0, 1, 17, 33):
        with pytest.raises(ValueError, match="membrane bits"):
            MembraneQuant(bad)


def test_binary_weights_of_standardized_gaussian_split_50_50():
    torch.manual_seed(0)
    w = 3.0 + 5.0 * torch.randn(64, 64, 3, 3)
    w = w + torch.linspace(0, 4, 64).view(64, 1, 1, 1)  # skewed per channel too
    plain = BinaryWeight("none")(w)
    assert (plain > 0).float().mean() > 0.65  # without WS-DR the signs follow the mean
    for mode in ("layer", "channel"):
        signs = BinaryWeight(mode)(w).sign()
        assert (signs > 0).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_binary_weight_values_and_channel_scale():
    w = torch.tensor([[1.0, -3.0, 0.0, 2.0], [-0.5, -0.5, 1.5, 0.0]])
    q = BinaryWeight("none")(w)
    # alpha_c = mean|w_c| = 1.5 and 0.625; sign(0) = +1 (Eq. 7)
    assert torch.equal(q, torch.tensor([[1.5, -1.5, 1.5, 1.5], [-0.625, -0.625, 0.625, 0.625]]))
    signs, alpha = BinaryWeight("none").integer_weights(w)
    assert signs.dtype == torch.int32 and torch.equal(alpha, torch.tensor([1.5, 0.625]))
    assert torch.equal(signs * alpha.view(2, 1), q)


def test_layer_standardization_is_eq14():
    w = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    quant = BinaryWeight("layer", eps=0.0)
    expected = (w - 3.0) / torch.tensor(3.5).sqrt()  # mean 3, population variance 3.5
    assert torch.allclose(quant.standardized(w), expected)
    channel = BinaryWeight("channel", eps=0.0).standardized(w)
    assert torch.allclose(channel, torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]))


def test_binary_gradient_is_clipped_straight_through_plus_scale_term():
    w = torch.tensor([[0.5, -2.0, 0.25, -0.75]], requires_grad=True)
    BinaryWeight("none")(w).sum().backward()
    # out_i = alpha * ste(w_i), alpha = mean|w| = 0.875, sum of signs = 0
    # d/dw_i = alpha * 1[|w_i| <= 1] + (sum_j sign_j) * sign(w_i) / 4
    assert torch.allclose(w.grad, torch.tensor([[0.875, 0.0, 0.875, 0.875]]))
    v = torch.tensor([[0.5, 2.0, 0.25]], requires_grad=True)
    BinaryWeight("none")(v).sum().backward()  # alpha = 11/12, sum of signs = 3
    assert torch.allclose(v.grad, torch.tensor([[11 / 12 + 1.0, 1.0, 11 / 12 + 1.0]]))


def test_binary_gradient_window_widens_the_straight_through_estimator():
    w = torch.tensor([[0.5, -2.0, 0.25, -3.5]], requires_grad=True)
    BinaryWeight("none", ste_window=3.0)(w).sum().backward()
    # alpha = mean|w| = 1.5625, sum of signs = 0: d/dw_i = alpha * 1[|w_i| < 3]; -2 now passes, -3.5 not
    assert torch.allclose(w.grad, torch.tensor([[1.5625, 1.5625, 1.5625, 0.0]]))
    with pytest.raises(ValueError, match="ste_window"):
        BinaryWeight("layer", ste_window=0.0)


def test_int8_weights_round_trip_within_half_a_step():
    torch.manual_seed(1)
    w = torch.randn(16, 8, 3, 3) * torch.linspace(0.01, 3, 16).view(16, 1, 1, 1)
    quant = IntWeight(8)
    q = quant(w)
    codes, scale = quant.integer_weights(w)
    step = w.abs().amax(dim=(1, 2, 3)) / 127
    assert torch.allclose(scale, step)
    assert ((q - w).abs() <= step.view(16, 1, 1, 1) / 2 + 1e-7).all()
    assert codes.abs().max() == 127 and codes.dtype == torch.int32
    assert torch.allclose(codes * scale.view(16, 1, 1, 1), q)


def test_int_weight_gradient_is_straight_through():
    w = torch.randn(4, 3, requires_grad=True)
    IntWeight(8)(w).sum().backward()
    assert torch.equal(w.grad, torch.ones(4, 3))


def test_full_precision_is_identity_and_has_no_integer_form():
    w = torch.randn(3, 3)
    assert FullPrecisionWeight()(w) is w
    with pytest.raises(ValueError, match="full-precision"):
        FullPrecisionWeight().integer_weights(w)


@pytest.mark.parametrize(
    "text, weight_bits, membrane_bits",
    [("1w2u", 1, 2), ("1w8u", 1, 8), ("32w32u", 32, 32), ("4w4u", 4, 4), (" 1w16u ", 1, 16)],
)
def test_precision_parse(text, weight_bits, membrane_bits):
    precision = Precision.parse(text)
    assert (precision.weight_bits, precision.membrane_bits) == (weight_bits, membrane_bits)
    assert str(precision) == text.strip()


@pytest.mark.parametrize("text", ["3w", "3w2u", "1w0u", "1w33u", "1w1u", "0w2u", "16w8u", "w2u", "1w2"])
def test_precision_rejects_bad_strings_in_one_line(text):
    with pytest.raises(ValueError) as error:
        Precision.parse(text)
    assert "\n" not in str(error.value) and text in str(error.value)


def test_precision_assigns_quantizers_by_role():
    binary = Precision.parse("1w2u")
    assert isinstance(binary.weight_quant(edge=False), BinaryWeight)
    assert binary.weight_quant(edge=True).bits == 8
    assert binary.weight_quant(edge=False, standardize="none").standardize == "none"
    assert Precision.parse("32w8u").weight_quant(edge=True).bits == 32
    assert Precision.parse("4w4u").weight_quant(edge=False).bits == 4


def composed_binary(w, standardize, eps=1e-5, window=1.0):
    """Eq. 6-7 and 14 written out with autograd operations and a straight-through sign clipped
    like hardtanh to [-window, window]."""
    if standardize == "layer":
        var, mean = torch.var_mean(w, correction=0)
        w = (w - mean) / torch.sqrt(var + eps)
    elif standardize == "channel":
        var, mean = torch.var_mean(w, dim=(1, 2, 3), keepdim=True, correction=0)
        w = (w - mean) / torch.sqrt(var + eps)
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    clipped = torch.nn.functional.hardtanh(w, -window, window)
    return alpha * (clipped + (torch.where(w >= 0, 1.0, -1.0).to(w.dtype) - clipped).detach())


@pytest.mark.parametrize("window", [1.0, 1.5])
@pytest.mark.parametrize("standardize", BinaryWeight.STANDARDIZATIONS)
def test_binary_weight_backward_equals_autograd_of_the_composed_expression(standardize, window):
    torch.manual_seed(0)
    w = (0.3 + 0.8 * torch.randn(6, 4, 3, 3, dtype=torch.float64)).requires_grad_()
    upstream = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    out = BinaryWeight(standardize, ste_window=window)(w)
    (grad,) = torch.autograd.grad(out, w, upstream)
    expected = composed_binary(w, standardize, window=window)
    (expected_grad,) = torch.autograd.grad(expected, w, upstream)
    torch.testing.assert_close(out, expected, rtol=1e-15, atol=0)
    w_hat = BinaryWeight(standardize).standardized(w.detach())
    assert 0 < (w_hat.abs() > window).double().mean() < 0.9  # the clip matters in this case
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_compiled_binary_weight_agrees_with_eager():
    torch.manual_seed(0)
    w = (0.3 + 0.8 * torch.randn(16, 8, 3, 3)).requires_grad_()
    upstream = torch.randn(16, 8, 3, 3)
    for standardize, window in (("layer", 1.0), ("channel", 2.0)):
        results = []
        for compile in (False, True):
            out = BinaryWeight(standardize, compile=compile, ste_window=window)(w)
            results.append((out, *torch.autograd.grad(out, w, upstream)))
        for compiled_result, eager in zip(results[1], results[0]):
            torch.testing.assert_close(compiled_result, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("standardize", BinaryWeight.STANDARDIZATIONS)
def test_binary_backward_block_by_block_equals_the_whole_weight_at_once(standardize):
    torch.manual_seed(3)
    w = 0.2 + torch.randn(7, 45)
    upstream = torch.randn(7, 45)
    _, stats = binarize(w, standardize, 1e-5)
    whole = binarize_backward(w, upstream.clone(), *stats, standardize)
    for block_rows in (1, 2, 3):  # blocks of unequal sizes too: 7 = 3 + 3 + 1
        assert torch.equal(binarize_backward(w, upstream.clone(), *stats, standardize, 1.0, block_rows), whole)
