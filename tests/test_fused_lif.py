"""The fused LIF (one autograd node over T, hand-written backward) against the reference loop."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qsnn_lightning.snn.backbones import build_model
from qsnn_lightning.snn.neurons import LIF
from qsnn_lightning.snn.spec import ModelSpec, NeuronSpec

BITS = (32, 2, 4, 8)


def inputs(shape=(5, 3, 4, 6), seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return (0.5 + 0.8 * torch.randn(shape, generator=generator, dtype=dtype)).requires_grad_()


def run(lif: LIF, x: torch.Tensor, upstream: torch.Tensor, calls: int = 2):
    """Feed ``x`` in ``calls`` chunks (the state streams across calls), backpropagate a fixed
    upstream gradient through the spikes and the last firing rate; return what both must agree on."""
    outputs = [lif(chunk) for chunk in x.chunk(calls)]
    spikes = torch.cat(outputs)
    ((spikes * upstream).sum() + lif.firing_rate).backward()
    quant = lif.membrane_quant
    learned_grad = quant.alpha.grad if quant.alpha is not None else None
    return (spikes.detach(), lif.v, lif.firing_rate.detach(), quant.running_alpha.clone(), quant.num_steps_tracked.clone(), x.grad,
            learned_grad)


@pytest.mark.parametrize("bits, scale", [(bits, "max") for bits in BITS] + [
    (bits, scale) for bits in (2, 4) for scale in ("tanh", "threshold", "learned")])
def test_fused_equals_reference_in_training_forward_and_gradients(bits, scale):
    upstream = torch.randn(5, 3, 4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = {}
    for neuron in ("reference", "fused"):
        lif = LIF(NeuronSpec(membrane_bits=bits, beta=0.8, neuron=neuron, membrane_scale=scale, theta=0.9)).double().train()
        if scale == "learned":
            lif.membrane_quant.alpha.data.fill_(0.7)  # below the largest potentials: some clip
        results[neuron] = run(lif, inputs(), upstream)
    reference, fused = results["reference"], results["fused"]
    spikes, v, rate, running_alpha, steps, grad, learned_grad = fused
    assert 0.1 < spikes.mean() < 0.9  # both regimes occur
    assert torch.equal(spikes, reference[0]) and torch.equal(v, reference[1]) and torch.equal(rate, reference[2])
    assert torch.equal(running_alpha, reference[3]) and torch.equal(steps, reference[4])  # the same EMA arithmetic
    assert steps.item() == (5 if bits != 32 and scale in ("max", "tanh") else 0)  # fixed and learned scales track nothing
    assert (grad != 0).float().mean() > 0.3
    torch.testing.assert_close(grad, reference[5], rtol=1e-12, atol=1e-12)
    if scale == "learned":
        assert learned_grad.abs() > 1e-6
        torch.testing.assert_close(learned_grad, reference[6], rtol=1e-12, atol=1e-12)
    if scale == "threshold":
        assert set((v / 0.9 * (2 ** (bits - 1) - 1)).round().unique().tolist()) <= set(range(-7, 8))


@pytest.mark.parametrize("bits, scale", [(2, "max"), (4, "max"), (2, "tanh"), (2, "threshold"), (4, "learned")])
def test_fused_equals_reference_in_eval_with_calibrated_scale_and_level_counts(bits, scale):
    counts = {}
    for neuron in ("reference", "fused"):
        lif = LIF(NeuronSpec(membrane_bits=bits, neuron=neuron, membrane_scale=scale)).train()
        lif(inputs(seed=3).detach())  # calibrate running_alpha
        lif.reset()
        lif.eval().count_levels(True)
        x = 3.0 * inputs(seed=4).detach()  # large inputs: the calibrated scale clips
        counts[neuron] = (lif(x), lif.v, lif.level_counts)
    for fused, reference in zip(counts["fused"], counts["reference"]):
        assert torch.equal(fused, reference)
    assert (counts["fused"][2] > 0).sum() >= 3  # several levels in use, clipped ones included


def test_fused_backward_keeps_one_tensor_per_step():
    saved = {}
    for neuron in ("reference", "fused"):
        lif = LIF(NeuronSpec(membrane_bits=2, neuron=neuron)).train()
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, sizes=sizes: sizes.append(t.numel()) or t, lambda t: t):
            lif(inputs((4, 2, 8)))
        saved[neuron] = sum(sizes)
    assert saved["fused"] == 4 * 2 * 8  # u[t] of each of the 4 steps, nothing else
    assert saved["reference"] >= 3 * saved["fused"]


def test_fused_lif_carries_the_input_dtype_under_bf16():
    x = inputs(dtype=torch.bfloat16)
    for neuron in ("reference", "fused"):
        lif = LIF(NeuronSpec(membrane_bits=2, neuron=neuron)).train()
        out = lif(x)
        assert out.dtype == torch.bfloat16 and lif.v.dtype == torch.bfloat16
    assert torch.equal(out, LIF(NeuronSpec(membrane_bits=2, neuron="reference")).train()(x))


@pytest.mark.parametrize("bits", ("1w2u", "32w32u"))
def test_backbone_training_step_is_the_same_with_either_neuron(bits):
    grads = {}
    for neuron in ("reference", "fused"):
        torch.manual_seed(0)
        model = build_model(ModelSpec(arch="fmnistnet", bits=bits, timesteps=3, neuron=neuron), input_shape=(1, 28, 28)).double().train()
        images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        model(images).logsumexp(-1).sum().backward()
        grads[neuron] = [p.grad for p in model.parameters()]
    for fused, reference in zip(grads["fused"], grads["reference"]):
        torch.testing.assert_close(fused, reference, rtol=1e-9, atol=1e-12)


def test_unknown_neuron_is_rejected():
    with pytest.raises(ValueError, match="neuron must be one of"):
        LIF(NeuronSpec(neuron="triton"))


@pytest.mark.slow
def test_compiled_kernels_equal_the_reference_in_float32():
    upstream = torch.randn(5, 3, 4, 6, generator=torch.Generator().manual_seed(1))
    reference = run(LIF(NeuronSpec(membrane_bits=2, neuron="reference")).train(), inputs(dtype=torch.float32), upstream)
    compiled = run(LIF(NeuronSpec(membrane_bits=2, compile=True)).train(), inputs(dtype=torch.float32), upstream)
    for fused, ref in zip(compiled[:5], reference[:5]):
        assert torch.equal(fused, ref)
    torch.testing.assert_close(compiled[5], reference[5], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_compiled_kernels_stay_finite_with_inductors_avx2_code(tmp_path):
    """The default experiment compiles its kernels; with Inductor's AVX2 code (a CPU without
    AVX-512, forced by ATEN_CPU_CAPABILITY) torch 2.14.1's vectorized kernels gave NaN at the first
    step. Its first epoch on 2,048 real images now trains (the run stops on a non-finite weight)."""
    qsnn = str(Path(sys.executable).with_name("qsnn"))
    result = subprocess.run(
        [qsnn, "train", "fmnist_1w2u", f"run_dir={tmp_path}", "data.subset=2048", "trainer.max_epochs=1",
         "trainer.enable_progress_bar=false", "speed.compile=true"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
