"""The lean path (speed.activation_memory=lean): what it keeps, and that it trains exactly as the
full path does (weights, BatchNorm statistics, running alpha_u, optimizer state, firing rates)."""

import pytest
import torch
from torch import nn

from qsnn_lightning.snn.backbones import build_model
from qsnn_lightning.snn.layers import AvgPool, MultiStep
from qsnn_lightning.snn.lean import chain_segments, lean_blockers, pack_input, pack_spikes, unpack_input, unpack_spikes
from qsnn_lightning.snn.losses import WSDRLoss
from qsnn_lightning.snn.neurons import LIF, spiking_layers
from qsnn_lightning.snn.spec import ModelSpec


def test_spikes_pack_to_a_bit_each_and_come_back_exactly():
    spikes = (torch.rand(3, 5, 7, 11) > 0.6).float()  # 1,155 elements: not a multiple of 8
    packed = pack_spikes(spikes)
    assert packed.dtype == torch.uint8 and packed.numel() == 145  # ceil(1155 / 8)
    assert torch.equal(unpack_spikes(packed, spikes.shape, torch.float32), spikes)
    assert pack_spikes(torch.tensor([1.0, 0, 1, 1, 0, 0, 0, 0, 1])).tolist() == [1 + 4 + 8, 1]  # bit i of byte j: element 8j + i


def test_pooled_counts_are_kept_as_bytes_and_come_back_bit_for_bit():
    spikes = (torch.rand(4, 3, 8, 6) > 0.5).float()
    pooled = nn.functional.avg_pool2d(spikes, 2)  # k / 4
    kept = pack_input(pooled, 4)
    assert kept.dtype == torch.uint8 and kept.numel() == (pooled.numel() + 1) // 2  # 4 bits a count in [0, 4]
    assert torch.equal(unpack_input(kept, 4, pooled.shape, pooled.dtype), pooled)
    wide = torch.randint(0, 17, (5, 3)).float() / 16  # 4x4 pooling: a byte each
    assert pack_input(wide, 16).numel() == 15 and torch.equal(unpack_input(pack_input(wide, 16), 16, wide.shape, wide.dtype), wide)


def test_pooling_keeps_no_input_and_has_atens_gradient():
    x = (torch.rand(2, 3, 7, 9) > 0.5).float().requires_grad_()  # odd sizes: the last row and column are dropped
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = AvgPool(2)(x)
    assert saved == [] and torch.equal(y, nn.functional.avg_pool2d(x, 2))
    grad = torch.randn_like(y)
    (expected,) = torch.autograd.grad(nn.functional.avg_pool2d(x, 2), x, grad)
    assert torch.equal(torch.autograd.grad(y, x, grad)[0], expected)


def _kinds(segment):
    return [type(m[0] if isinstance(m, MultiStep) else m).__name__ for m in segment.modules]


def test_vggsnn_is_cut_into_conv_bn_lif_pool_blocks_with_spike_or_count_inputs():
    model = build_model(ModelSpec(arch="vggsnn"), input_shape=(2, 32, 32))
    segments = model.segments()
    assert [s.input_levels for s in segments] == [None, 1, 4, 1, 4, 1, 4, 1]
    assert _kinds(segments[0]) == ["InputQuant", "QConv2d", "LIF"]
    assert _kinds(segments[1]) == ["QConv2d", "LIF", "AvgPool"] and _kinds(segments[2]) == ["QConv2d", "LIF"]
    assert _kinds(segments[-1]) == ["QConv2d", "LIF", "AvgPool"]  # the final pooling before the classifier
    fmnist = build_model(ModelSpec(arch="fmnistnet"), input_shape=(1, 28, 28)).segments()
    assert _kinds(fmnist[0]) == ["InputQuant", "QConv2d", "LIF", "AvgPool"] and fmnist[1].input_levels == 4
    resnet = build_model(ModelSpec(arch="resnet19"), input_shape=(3, 16, 16)).segments()
    assert len(resnet) == 1 + 8 and all(s.input_levels == 1 for s in resnet[1:])
    pools = chain_segments(nn.Sequential(MultiStep(AvgPool(2)), MultiStep(AvgPool(2)), LIF()), input_levels=1)
    assert [s.input_levels for s in pools] == [1]


def _train(arch, bits, scale, shape, events, mode, steps=3, compile=False, neuron="fused", optimizer="sgd"):
    torch.manual_seed(0)
    spec = ModelSpec(arch=arch, bits=bits, timesteps=3, membrane_scale=scale, neuron=neuron)
    model = build_model(spec, num_classes=5, input_shape=shape, activation_memory=mode, compile=compile).train()
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.Generator().manual_seed(1)
    loss_fn, records = WSDRLoss(lam=0.5), []
    for _ in range(steps):
        x = torch.rand((4, 3, *shape) if events else (4, *shape), generator=data)
        x = (x > 0.7).float() if events else x
        logits = model(x)
        rates = [lif.firing_rate for lif in spiking_layers(model)]
        loss = loss_fn(logits, torch.randint(0, 5, (4,), generator=data), rates)
        records.append((logits.detach(), loss.total.detach(), torch.stack(rates).detach()))
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    return model, opt, records


def _assert_same_training(full, lean):
    (model_a, opt_a, rec_a), (model_b, opt_b, rec_b) = full, lean
    for (logits_a, loss_a, rates_a), (logits_b, loss_b, rates_b) in zip(rec_a, rec_b):
        assert torch.equal(logits_a, logits_b) and torch.equal(loss_a, loss_b) and torch.equal(rates_a, rates_b)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()  # weights, BatchNorm statistics, running alpha_u
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(state_b[key], state_a[key], rtol=0, atol=1e-5, msg=key)
    for group_a, group_b in zip(opt_a.state.values(), opt_b.state.values()):
        for key in group_a:
            torch.testing.assert_close(group_b[key], group_a[key], rtol=0, atol=1e-5, msg=key)


BACKBONE_CASES = [
    ("fmnistnet", (1, 28, 28), False), ("vggsnn", (2, 32, 32), True), ("resnet19", (3, 16, 16), False),
    ("dvsmcunet", (2, 32, 32), True), ("vgg16", (3, 32, 32), False),
]
PRECISION_CASES = [("1w2u", "max"), ("1w4u", "threshold"), ("1w8u", "learned"), ("32w32u", "max"), ("1w2u", "tanh")]


@pytest.mark.parametrize("arch, shape, events", BACKBONE_CASES, ids=[c[0] for c in BACKBONE_CASES])
@pytest.mark.parametrize("bits, scale", PRECISION_CASES, ids=["-".join(c) for c in PRECISION_CASES])
def test_three_steps_of_lean_training_equal_the_full_path(arch, shape, events, bits, scale):
    if arch == "vgg16" and (bits, scale) != ("1w4u", "threshold"):
        pytest.skip("one precision for the largest backbone")  # the others run on every backbone
    full = _train(arch, bits, scale, shape, events, "full")
    _assert_same_training(full, _train(arch, bits, scale, shape, events, "lean"))


def test_lean_training_with_adam_and_the_reference_neuron_equals_the_full_path():
    for neuron, optimizer in (("reference", "sgd"), ("fused", "adam")):
        args = ("vggsnn", "1w4u", "learned", (2, 16, 16), True)
        _assert_same_training(_train(*args, "full", neuron=neuron, optimizer=optimizer),
                              _train(*args, "lean", neuron=neuron, optimizer=optimizer))


@pytest.mark.slow
def test_lean_training_with_compiled_kernels_equals_the_full_path():
    args = ("fmnistnet", "1w2u", "max", (1, 28, 28), False)
    _assert_same_training(_train(*args, "full", compile=True), _train(*args, "lean", compile=True))


def test_side_effects_happen_once_per_step():
    model, _, _ = _train("vggsnn", "1w4u", "max", (2, 16, 16), True, "lean", steps=2)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {int(bn.num_batches_tracked) for bn in bns} == {2}
    assert {int(lif.membrane_quant.num_steps_tracked) for lif in spiking_layers(model)} == {2 * 3}  # T = 3 per step
    assert all(lif.firing_rate.grad_fn is not None and lif.v.grad_fn is None for lif in spiking_layers(model))


def test_lean_keeps_a_bit_per_spike_between_the_passes():
    model = build_model(ModelSpec(arch="vggsnn", bits="1w4u", timesteps=4), input_shape=(2, 32, 32), num_classes=5).train()
    x = (torch.rand(2, 4, 2, 32, 32) > 0.8).float()

    def saved(mode):
        model.activation_memory, seen = mode, {}

        def keep(tensor):
            seen[tensor.untyped_storage()._cdata] = tensor
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            model(x)
        parameters = {p.untyped_storage()._cdata for p in model.parameters()}
        return [t for key, t in seen.items() if key not in parameters]

    full, lean = (sum(t.untyped_storage().nbytes() for t in saved(mode)) for mode in ("full", "lean"))
    floats = sorted(t.numel() for t in saved("lean") if t.dtype != torch.uint8)
    # the classifier's per-channel weight scale, its input and the frames: nothing else in float
    assert floats == [5, 4 * 2 * 512 * 2 * 2, x.numel()]
    # bits: the spikes of the stem and of the unpooled blocks; the pooled counts, 4 bits each
    bits = 64 * 32**2 + 256 * 16**2 + 512 * 8**2 + 512 * 4**2 + 4 * (128 * 16**2 + 256 * 8**2 + 512 * 4**2)
    assert lean == sum(floats) * 4 + 2 * 4 * bits // 8 and lean < full / 50, (full, lean)


def test_layers_that_cannot_be_recomputed_are_named():
    model = build_model(ModelSpec(arch="fmnistnet"), input_shape=(1, 28, 28))
    assert lean_blockers(model) == []
    model.features.insert(1, nn.Dropout(0.1))
    assert lean_blockers(model) == ["features.1 (Dropout)"]
    with pytest.raises(ValueError, match=r"cannot recompute features.1 \(Dropout\); use speed.activation_memory=full"):
        model.activation_memory = "lean"
        model.check_recomputable()
    with pytest.raises(ValueError, match="activation_memory must be one of"):
        build_model(ModelSpec(), activation_memory="maybe")
