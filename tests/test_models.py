import pytest
import torch
from torch import nn

from qsnn_lightning.snn.backbones import BACKBONES, build_model
from qsnn_lightning.snn.footprint import model_bits, spiking_layer_sizes
from qsnn_lightning.snn.layers import MultiStep, QConv2d, QLinear
from qsnn_lightning.snn.neurons import spiking_layers
from qsnn_lightning.snn.quant import BinaryWeight
from qsnn_lightning.snn.spec import ModelSpec


def test_resnet19_has_the_papers_parameter_count():
    model = build_model(ModelSpec(arch="resnet19"), num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 12_569_226


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, shape, frames",
    [("resnet19", (3, 32, 32), False), ("vgg16", (3, 64, 64), False),
     ("vggsnn", (2, 48, 48), True), ("vggsnn", (2, 128, 128), True), ("fmnistnet", (1, 28, 28), False),
     ("dvsmcunet", (2, 32, 32), True)],
)
def test_backbones_give_per_step_logits(name, shape, frames):
    model = build_model(ModelSpec(arch=name, timesteps=3, bits="1w2u"), input_shape=shape, num_classes=7)
    x = torch.rand(2, 3, *shape) if frames else torch.rand(2, *shape)  # frames: [B, T, C, H, W]
    assert model(x).shape == (3, 2, 7)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_quantizers_follow_the_roles(name):
    shape = (1, 28, 28) if name == "fmnistnet" else (3, 32, 32)
    model = build_model(ModelSpec(arch=name, bits="1w4u"), input_shape=shape)
    layers = [m for m in model.modules() if isinstance(m, (QConv2d, QLinear))]
    assert layers[0].weight_quant.bits == 8 and layers[-1].weight_quant.bits == 8
    assert all(isinstance(m.weight_quant, BinaryWeight) for m in layers[1:-1])
    assert {layer.membrane_quant.bits for layer in spiking_layers(model)} == {4}
    full = build_model(ModelSpec(arch=name, bits="32w32u"), input_shape=shape)
    assert {m.weight_quant.bits for m in full.modules() if isinstance(m, (QConv2d, QLinear))} == {32}


def test_input_bits_default_to_the_precision_and_32_switches_the_input_quantizer_off():
    assert build_model(ModelSpec(bits="1w2u")).input_quant.bits == 8  # unset, as in checkpoints of earlier versions
    assert build_model(ModelSpec(bits="32w32u")).input_quant.bits == 32
    off = build_model(ModelSpec(bits="1w2u", input_bits=32))
    x = torch.randn(2, 3, 32, 32)
    assert off.input_quant.bits == 32 and torch.equal(off.input_quant(x), x)
    assert not torch.equal(build_model(ModelSpec(bits="1w2u")).input_quant(x), x)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_direct_encoding_equals_presenting_the_image_every_step(mode):
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="fmnistnet", timesteps=3, bits="1w8u"), input_shape=(1, 28, 28)).train(mode == "train")
    image = torch.rand(4, 1, 28, 28)
    once = model(image)
    repeated = model(image.unsqueeze(1).repeat(1, 3, 1, 1, 1))  # [B, T, C, H, W] frames, all the same
    assert torch.allclose(once, repeated, atol=1e-5)


@pytest.mark.slow
def test_event_frames_are_presented_one_per_step_never_repeated():
    torch.manual_seed(0)
    # a low threshold so that an untrained network's spikes reach the classifier
    model = build_model(ModelSpec(arch="fmnistnet", timesteps=3, bits="1w8u", theta=0.2), input_shape=(2, 34, 34))
    model(torch.rand(4, 3, 2, 34, 34))  # one training step calibrates the scales
    model.eval()
    frames = torch.rand(4, 3, 2, 34, 34)
    per_step = model(frames)
    first_frame_only = model(frames[:, 0])  # direct encoding of frame 0 at every step
    # step 0 sees only frame 0 in both; from step 1 on the frames differ from frame 0
    torch.testing.assert_close(per_step[0], first_frame_only[0])
    assert not torch.allclose(per_step[1:], first_frame_only[1:])
    # sample b's logits depend on sample b's frames only (batch-major input, not time-major)
    swapped = model(frames[[1, 0, 2, 3]])
    torch.testing.assert_close(swapped[:, 0], per_step[:, 1])
    with pytest.raises(ValueError, match="got 2 frames per sample for a model of T = 3"):
        model(frames[:, :2])


def test_batches_do_not_share_state():
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="fmnistnet", bits="1w2u"), input_shape=(1, 28, 28)).eval()
    first = torch.rand(3, 1, 28, 28)
    expected = model(first)
    model(torch.rand(5, 1, 28, 28))  # a batch of another size in between
    assert torch.equal(model(first), expected)


def test_build_model_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown architecture 'resnet20'"):
        build_model(ModelSpec(arch="resnet20"))
    with pytest.raises(ValueError, match="membrane bits"):
        build_model(ModelSpec(arch="fmnistnet", bits="1w33u"), input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match="too small"):
        build_model(ModelSpec(arch="vgg16"), input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="standardize"):
        build_model(ModelSpec(arch="fmnistnet", standardize="batch"), input_shape=(1, 28, 28))


def test_fmnistnet_at_1w2u_fits_a_cortex_m4():
    model = build_model(ModelSpec(arch="fmnistnet", bits="1w2u"), input_shape=(1, 28, 28))
    flash_bytes = model_bits(model) / 8
    last_layer_bytes = model.fc.weight.numel()  # 8-bit classifier
    neurons = spiking_layer_sizes(model, (1, 28, 28))
    # every layer's membrane held at once as one int8 each, plus every layer's spikes as bits
    ram_bytes = sum(neurons) + sum(neurons) / 8
    assert flash_bytes < 64 * 1024 and last_layer_bytes <= 16 * 1024
    assert ram_bytes < 48 * 1024


def test_dvsmcunet_at_1w2u_has_the_memory_of_its_comment():
    """Weights, 2-bit membranes kept between steps and the largest two consecutive spike maps of
    a step (LIF spikes at 1 bit, 2x2 average pools of spikes at 3 bits: 0..4), counted from the model."""
    model = build_model(ModelSpec(arch="dvsmcunet", timesteps=16, bits="1w2u"), input_shape=(2, 32, 32), num_classes=11)
    weight_bytes = sum(m.weight.numel() * m.weight_quant.bits for m in model.modules()
                       if isinstance(m, (QConv2d, QLinear))) / 8
    membrane_bytes = sum(spiking_layer_sizes(model, (2, 32, 32))) * 2 / 8
    maps = []
    pools = [m for m in model.modules() if isinstance(m, MultiStep) and isinstance(m[0], nn.AvgPool2d)]
    for layers, bits in ((spiking_layers(model), 1), (pools, 3)):
        for layer in layers:
            layer.register_forward_hook(lambda _m, _i, out, bits=bits: maps.append(out[0, 0].numel() * bits))
    model(torch.zeros(1, 16, 2, 32, 32))
    pair_bytes = max(a + b for a, b in zip(maps, maps[1:])) / 8
    assert (weight_bytes, membrane_bytes, pair_bytes) == (18_016, 7_680, 3_584) and model.fc.in_features == 512
