"""The lean path (speed.activation_memory=lean): what it keeps, and that it trains exactly as the
full path does (weights, BatchNorm statistics, running alpha_u, optimizer state, firing rates)."""

import pytest
import torch
from torch import nn

from qsnn_lightning.snn.backbones import build_model
from qsnn_lightning.snn.layers import AvgPool, BatchNorm, MultiStep, normalize
from qsnn_lightning.snn.lean import lean_blockers
from qsnn_lightning.snn.lean_block import _kept_outputs, chunkable, uses_chunks
from qsnn_lightning.snn.losses import WSDRLoss
from qsnn_lightning.snn.neurons import LIF, spiking_layers
from qsnn_lightning.snn.quant import BinaryWeight
from qsnn_lightning.snn.segments import (
    chain_segments,
    levels_after,
    pack_codes,
    pack_input,
    pack_spikes,
    unpack_codes,
    unpack_input,
    unpack_rows,
    unpack_spikes,
)
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
    assert _kinds(segments[0]) == ["QConv2d", "LIF"]
    assert _kinds(segments[1]) == ["QConv2d", "LIF", "AvgPool"] and _kinds(segments[2]) == ["QConv2d", "LIF"]
    assert _kinds(segments[-1]) == ["QConv2d", "LIF", "AvgPool"]  # the final pooling before the classifier
    fmnist = build_model(ModelSpec(arch="fmnistnet"), input_shape=(1, 28, 28)).segments()
    assert _kinds(fmnist[0]) == ["QConv2d", "LIF", "AvgPool"] and fmnist[1].input_levels == 4
    resnet = build_model(ModelSpec(arch="resnet19"), input_shape=(3, 16, 16)).segments()
    assert len(resnet) == 1 + 8 and all(s.input_levels == 1 for s in resnet[1:])
    pools = chain_segments(nn.Sequential(MultiStep(AvgPool(2)), MultiStep(AvgPool(2)), LIF()), input_levels=1)
    assert [s.input_levels for s in pools] == [1]



def test_levels_after_counts_pooled_spikes_and_nothing_else():
    """What a block puts out: spikes (1 level), pooled counts (levels = area), or values that are
    no counts (None), e.g. after a peer library's neuron, as benchmarks/peers.py builds."""
    pool = MultiStep(AvgPool(2))
    assert levels_after([LIF()]) == 1 and levels_after([LIF(), pool]) == 4 and levels_after([LIF(), pool, pool]) == 16
    assert levels_after([LIF(), nn.ReLU()]) is None and levels_after([nn.ReLU(), pool]) is None

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


def _assert_same_training(full, lean, exact: bool):
    """The same logits, losses and firing rates at every step (bit for bit), and weights, buffers
    and optimizer state within 1e-5 (1e-4 relative where the value is large; ``exact``: equal).

    Not exact, a binary layer's latent weight whose standardized value lies within rounding of
    the straight-through window's edge (|w_hat| = ste_window) can have its gradient passed on
    one path and stopped on the other once the weights differ by rounding (from the second
    step on): up to one binary weight in 10,000 (and at least one) may differ more, with its
    optimizer state and the running statistics of the BatchNorm after it (the next step's batch
    statistics see the differing weight; Adam turns a rounding-sized difference of a gradient
    near 0 into a step of the learning rate's size)."""
    (model_a, opt_a, rec_a), (model_b, opt_b, rec_b) = full, lean
    for (logits_a, loss_a, rates_a), (logits_b, loss_b, rates_b) in zip(rec_a, rec_b):
        assert torch.equal(logits_a, logits_b) and torch.equal(loss_a, loss_b) and torch.equal(rates_a, rates_b)
    binary = {id(m.weight) for m in model_a.modules() if isinstance(getattr(m, "weight_quant", None), BinaryWeight)}
    names = {id(p): name for name, p in model_a.named_parameters()}
    binary_names = {names[key] for key in binary}
    statistics_after_binary = {f"{prefix}{later_name}.{statistic}" for prefix, earlier, later_name, later in _neighbours(model_a)
                               if id(getattr(earlier, "weight", None)) in binary and isinstance(later, nn.BatchNorm2d)
                               for statistic in ("running_mean", "running_var")}
    state_a, state_b = model_a.state_dict(), model_b.state_dict()  # weights, BatchNorm statistics, running alpha_u
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        _assert_close(state_b[key], state_a[key], exact, key, key in binary_names | statistics_after_binary)
    parameters_a = [p for group in opt_a.param_groups for p in group["params"]]
    parameters_b = [p for group in opt_b.param_groups for p in group["params"]]
    for parameter_a, parameter_b in zip(parameters_a, parameters_b):
        for key in opt_a.state[parameter_a]:
            _assert_close(opt_b.state[parameter_b][key], opt_a.state[parameter_a][key], exact, key, id(parameter_a) in binary)


def _neighbours(model: nn.Module):
    """(prefix, module, name and module of the one after it) of every module's consecutive children."""
    for name, parent in model.named_modules():
        children = list(parent.named_children())
        for (_, earlier), (later_name, later) in zip(children, children[1:]):
            yield f"{name}." if name else "", earlier, later_name, later


def _assert_close(actual, expected, exact: bool, name: str, binary: bool):
    if exact or actual.dtype not in (torch.float32, torch.float64):
        assert torch.equal(actual, expected), name
        return
    off = (actual - expected).abs() > 1e-5 + 1e-4 * expected.abs()
    allowed = 1 + expected.numel() // 10_000 if binary else 0
    assert int(off.sum()) <= allowed, (name, int(off.sum()), float((actual - expected).abs().max()))


BACKBONE_CASES = [
    ("fmnistnet", (1, 28, 28), False), ("vggsnn", (2, 32, 32), True), ("resnet19", (3, 16, 16), False),
    ("dvsmcunet", (2, 32, 32), True), ("vgg16", (3, 32, 32), False),
]
PRECISION_CASES = [("1w2u", "max"), ("1w4u", "threshold"), ("1w8u", "learned"), ("32w32u", "max"), ("1w2u", "tanh")]


@pytest.mark.slow
@pytest.mark.parametrize("arch, shape, events", BACKBONE_CASES, ids=[c[0] for c in BACKBONE_CASES])
@pytest.mark.parametrize("bits, scale", PRECISION_CASES, ids=["-".join(c) for c in PRECISION_CASES])
def test_three_steps_of_lean_training_equal_the_full_path(arch, shape, events, bits, scale):
    if arch == "vgg16" and (bits, scale) != ("1w4u", "threshold"):
        pytest.skip("one precision for the largest backbone")  # the others run on every backbone
    # ResNet19's residual blocks are recomputed by autograd (bit for bit); VGG blocks in chunks of
    # time steps, whose gradient sums run in another order
    exact = arch == "resnet19"
    full = _train(arch, bits, scale, shape, events, "full")
    _assert_same_training(full, _train(arch, bits, scale, shape, events, "lean"), exact)
    if not exact:  # one step from the same weights: every value within 1e-5, binary weights included
        one_step = [_train(arch, bits, scale, shape, events, mode, steps=1) for mode in ("full", "lean")]
        state_a, state_b = (model.state_dict() for model, _, _ in one_step)
        for key in state_a:
            torch.testing.assert_close(state_b[key], state_a[key], rtol=1e-5, atol=1e-5, msg=key)


def test_the_last_blocks_keep_their_conv_outputs_within_the_largest():
    model = build_model(ModelSpec(arch="vggsnn"), input_shape=(2, 128, 128), activation_memory="lean")
    # conv outputs per sample and step: 64 x 128^2, 128 x 128^2, 256 x 64^2 (twice), 512 x 32^2 (twice), 512 x 16^2 (twice)
    assert _kept_outputs(tuple(model.segments()), torch.Size((2, 128, 128))) == [False] * 4 + [True] * 4


@pytest.mark.slow
@pytest.mark.parametrize("share", [0.0, 100.0])
def test_kept_conv_outputs_give_the_recomputed_ones_training_bit_for_bit(share, monkeypatch):
    """Every block recomputing its conv output (share 0), every block keeping it (100), the
    default (the last four): the same three steps, bit for bit."""
    from qsnn_lightning.snn import lean_block

    args = ("vggsnn", "1w4u", "learned", (2, 32, 32), True, "lean")
    default = _train(*args)
    monkeypatch.setattr(lean_block, "KEEP_Y_SHARE", share)
    _assert_same_training(default, _train(*args), exact=True)


@pytest.mark.slow
def test_lean_training_with_adam_and_the_reference_neuron_equals_the_full_path():
    for neuron, optimizer in (("reference", "sgd"), ("fused", "adam")):
        args = ("vggsnn", "1w4u", "learned", (2, 16, 16), True)
        _assert_same_training(_train(*args, "full", neuron=neuron, optimizer=optimizer),
                              _train(*args, "lean", neuron=neuron, optimizer=optimizer), exact=neuron == "reference")


@pytest.mark.slow
def test_lean_training_with_compiled_kernels_equals_the_full_path():
    args = ("fmnistnet", "1w2u", "max", (1, 28, 28), False)
    _assert_same_training(_train(*args, "full", compile=True), _train(*args, "lean", compile=True), exact=False)


def test_side_effects_happen_once_per_step():
    model, _, _ = _train("vggsnn", "1w4u", "max", (2, 16, 16), True, "lean", steps=2)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {int(bn.num_batches_tracked) for bn in bns} == {2}
    assert {int(lif.membrane_quant.num_steps_tracked) for lif in spiking_layers(model)} == {2 * 3}  # T = 3 per step
    # the rates keep their gradient for the WS-DR loss; no state is carried out of a training batch
    assert all(lif.firing_rate.grad_fn is not None and lif.v is None for lif in spiking_layers(model))


def test_lean_keeps_bits_between_the_passes():
    """Bytes alive after the forward pass, beyond the input frames: the full path's saved
    tensors against the lean path's packed spikes, pooled counts and k-bit membrane levels."""
    from torch.distributed._tools.mem_tracker import MemTracker

    model = build_model(ModelSpec(arch="vggsnn", bits="1w4u", timesteps=4), input_shape=(2, 32, 32), num_classes=5).train()
    x = (torch.rand(2, 4, 2, 32, 32) > 0.8).float()

    def kept(mode):
        model.activation_memory = mode
        tracker = MemTracker()
        with tracker:
            logits = model(x)
        del logits  # the firing rates keep the graph, and what it holds for the backward pass
        current = tracker.get_tracker_snapshot("current")[torch.device("cpu")]
        return sum(count for kind, count in current.items() if str(kind).endswith("ACT"))

    full, lean = kept("full"), kept("lean")
    steps, batch = 4, 2
    # the spikes of the stem and of the unpooled blocks, 1 bit each; pooled counts, 4 bits each
    inputs = (64 * 32**2 + 256 * 16**2 + 512 * 8**2 + 512 * 4**2 + 4 * (128 * 16**2 + 256 * 8**2 + 512 * 4**2)) // 8
    # every block's stored membranes but the last step's, 4 bits each (k = 4: 15 codes)
    neurons = 64 * 32**2 + 128 * 32**2 + 256 * 16**2 * 2 + 512 * 8**2 * 2 + 512 * 4**2 * 2
    membranes = (steps - 1) * batch * neurons // 2
    classifier_input = steps * batch * 512 * 2 * 2 * 4
    # the conv outputs the last four blocks keep (float32): together within the largest (128 x 32 x 32)
    kept_outputs = steps * batch * (512 * 8**2 * 2 + 512 * 4**2 * 2) * 4
    assert lean <= steps * batch * inputs + membranes + kept_outputs + 2 * classifier_input + 64 * 1024, (full, lean)
    assert lean - kept_outputs < full / 15, (full, lean)  # beside the kept conv outputs, bits


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


def test_batchnorm_normalizes_a_chunk_as_the_whole_and_trains_as_torchs():
    torch.manual_seed(0)
    y = torch.randn(48, 16, 6, 6) * 3 + 1
    ours, torchs = BatchNorm(16), nn.BatchNorm2d(16)
    with torch.no_grad():
        for bn in (ours, torchs):
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.normal_()
    torchs.load_state_dict(ours.state_dict())
    inputs = [y.clone().requires_grad_() for _ in range(2)]
    out_ours, out_torchs = ours(inputs[0]), torchs(inputs[1])
    torch.testing.assert_close(out_ours, out_torchs, rtol=0, atol=2e-6)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(ours, name), getattr(torchs, name)), name
    grad = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(out_ours, (inputs[0], ours.weight, ours.bias), grad),
                    torch.autograd.grad(out_torchs, (inputs[1], torchs.weight, torchs.bias), grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)
    whole = normalize(ours, y, mean, var)
    assert torch.equal(torch.cat([normalize(ours, part, mean, var) for part in y.split(8)]), whole)


def test_rows_and_codes_unpack_without_the_rest():
    spikes = (torch.rand(5, 3, 8, 4, 4) > 0.5).float()  # [T, B, C, H, W]: 384 values a step
    packed = pack_input(spikes, 1)
    row = 3 * 8 * 4 * 4
    assert torch.equal(unpack_rows(packed, 1, row, 2, 4, torch.float32), spikes[2:4].flatten())
    pooled = nn.functional.avg_pool2d(spikes.flatten(0, 1), 2).view(5, 3, 8, 2, 2)
    assert torch.equal(unpack_rows(pack_input(pooled, 4), 4, 3 * 8 * 4, 1, 5, torch.float32), pooled[1:5].flatten())
    codes = torch.randint(0, 15, (11,), dtype=torch.uint8)
    assert pack_codes(codes, 14).numel() == 6 and torch.equal(unpack_codes(pack_codes(codes, 14), 14, 11), codes)
    assert torch.equal(unpack_codes(pack_codes(codes, 254), 254, 11), codes)


def test_vggsnn_runs_as_one_chunked_chain_after_a_chunked_stem():
    model = build_model(ModelSpec(arch="vggsnn"), input_shape=(2, 32, 32), activation_memory="lean").train()
    x = (torch.rand(2, 2, 2, 32, 32) > 0.8).float()
    frames = model.present(x)
    assert all(uses_chunks(segment, frames) for segment in model.segments())
    assert not uses_chunks(model.segments(static=True)[0], frames)  # a static image's stem: recomputed by autograd
    resnet = build_model(ModelSpec(arch="resnet19"), input_shape=(3, 16, 16))
    assert not any(chunkable(segment) for segment in resnet.segments()[1:])


@pytest.mark.slow
def test_the_papers_dvs_gesture_step_fits_a_24_gb_card_on_the_lean_path():
    """VGGSNN, 2x128x128, T = 16, batch 64 (dvsgesture_1w4u): the largest total of activations
    and temporaries alive in a training step, tracked on fake tensors (no memory used)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    with FakeTensorMode(allow_non_fake_inputs=True):
        model = build_model(ModelSpec(arch="vggsnn", bits="1w4u", timesteps=16), num_classes=11,
                            input_shape=(2, 128, 128), activation_memory="lean").train()
        tracker = MemTracker()
        tracker.track_external(model)
        with tracker:
            logits = model(torch.zeros(64, 16, 2, 128, 128))
            WSDRLoss()(logits, torch.zeros(64, dtype=torch.long), [lif.firing_rate for lif in spiking_layers(model)]).total.backward()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    assert peak < 20e9, peak  # the full path: 66.8 GB


@pytest.mark.parametrize("bits, scale", [("1w2u", "max"), ("1w4u", "learned"), ("32w32u", "max")])
def test_lean_evaluation_in_chunks_of_steps_gives_the_full_paths_values(bits, scale, monkeypatch):
    """Eval mode without autograd: logits, firing rates and membrane level counts equal the
    full path's, with chunks of one step (CHUNK_BYTES shrunk) and of several."""
    from qsnn_lightning.snn import lean

    trained, _, _ = _train("vggsnn", bits, scale, (2, 32, 32), True, "full", steps=2)  # BatchNorm and alpha_u statistics
    models = {"full": trained}
    models["lean"] = build_model(ModelSpec(arch="vggsnn", bits=bits, timesteps=3, membrane_scale=scale),
                                 num_classes=5, input_shape=(2, 32, 32), activation_memory="lean")
    models["lean"].load_state_dict(trained.state_dict())
    x = (torch.rand(4, 3, 2, 32, 32, generator=torch.Generator().manual_seed(2)) > 0.8).float()
    results = {}
    for chunk_bytes in (1, 4 * 64 * 32 * 32 * 4 * 2):  # one step, then two steps a chunk
        monkeypatch.setattr(lean, "CHUNK_BYTES", chunk_bytes)
        for mode, model in models.items():
            model.eval()
            for lif in spiking_layers(model):
                lif.count_levels(True)
            with torch.inference_mode():
                logits = model(x)
            results[mode] = (logits, [lif.firing_rate for lif in spiking_layers(model)],
                             [lif.level_counts for lif in spiking_layers(model)])
        (logits_a, rates_a, counts_a), (logits_b, rates_b, counts_b) = results["full"], results["lean"]
        assert torch.equal(logits_a, logits_b)
        torch.testing.assert_close(torch.stack(rates_b), torch.stack(rates_a), rtol=1e-6, atol=0)
        assert all(a is None and b is None or torch.equal(a, b) for a, b in zip(counts_a, counts_b))
