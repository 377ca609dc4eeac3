"""The fused multi-step LIF: the charge / fire / reset / store loop of :class:`~qsnn_lightning.neurons.LIF`
over all T steps as one autograd node with a hand-written backward pass.

The reference loop (``LIF(neuron="reference")``) records about a dozen autograd nodes per step,
each keeping its inputs alive until the backward pass. This path runs the steps without autograd,
keeps only the membrane before reset ``u[t]`` of every step and recomputes the rest (spike,
surrogate) in the backward pass. Forward values are those of the reference (the same spikes,
stored membranes and running scales); gradients agree up to float rounding. Per step, forward
(Eq. 1-3, 8-10) and backward::

    u[t] = tau v[t-1] + x[t]     s[t] = H(u[t] - theta)     r[t] = u[t] (1 - s[t])     v[t] = Q_u(r[t])

    g[t]     = dL/dv[t] = tau dL/du[t+1]      (0 at the last step: the final state is detached)
    dL/du[t] = (dL/ds[t] - g[t] u[t]) * sigma'(u[t]) + g[t] (1 - s[t])      sigma' of Eq. 5

since Q_u passes gradients straight through (``dQ_u/dr = 1``, ``alpha_u`` has no gradient) and
``dL/dx[t] = dL/du[t]``. The running scale of Q_u takes the T per-step maxima after the loop,
with the arithmetic of one update per step.

Each step is a few small pure functions (`fire`, `store`, `step_backward`). ``compile=True``
compiles them with ``torch.compile`` (TorchInductor: one C++/OpenMP loop per function on CPU,
a Triton kernel on CUDA), so a step is one pass over memory instead of one per operation; the
first use compiles (tens of seconds on a 2-core CPU, cached on disk afterwards).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .quant import MembraneQuant, compiled, integer_levels
from .surrogate import triangle


def fire(v: torch.Tensor, x: torch.Tensor, tau: float, theta: float):
    """Eq. 1-3: charge, fire, hard reset. Returns ``(u, s, r)``: the membrane before reset, the
    spikes and the membrane after reset."""
    u = tau * v + x  # Eq. 1
    spiked = u >= theta  # Eq. 2
    return u, spiked.to(u.dtype), u.masked_fill(spiked, 0.0)  # Eq. 3


def fire_with_max(v: torch.Tensor, x: torch.Tensor, tau: float, theta: float):
    """:func:`fire` and the step's max |r| (the training scale of Eq. 8)."""
    u, s, r = fire(v, x, tau, theta)
    return u, s, r, r.abs().amax()


def store(r: torch.Tensor, alpha: torch.Tensor, levels: int) -> torch.Tensor:
    """Eq. 8-10: the k-bit membrane ``alpha_u / n * round(n clip(r / alpha_u, -1, 1))``."""
    return alpha / levels * integer_levels(r, alpha, levels)


def step_backward(u: torch.Tensor, grad_s: torch.Tensor, grad_v: "torch.Tensor | None", tau: float, theta: float, beta: float):
    """``(dL/du[t], dL/dv[t-1])`` from the gradients of the step's spikes and of its stored
    membrane (``grad_v`` None: none, the last step)."""
    surrogate = triangle(u - theta, beta)  # Eq. 5
    if grad_v is None:
        grad_u = grad_s * surrogate
    else:
        grad_u = (grad_s - grad_v * u) * surrogate + grad_v.masked_fill(u >= theta, 0.0)
    return grad_u, tau * grad_u


@dataclass(frozen=True)
class Kernels:
    fire: Callable
    fire_with_max: Callable
    store: Callable
    step_backward: Callable


EAGER = Kernels(fire, fire_with_max, store, step_backward)
COMPILED = Kernels(*(compiled(kernel) for kernel in (fire, fire_with_max, store, step_backward)))


def kernels(compile: bool) -> Kernels:
    """The step functions, compiled on first use with ``compile`` (dynamic shapes: one
    compilation serves every layer)."""
    return COMPILED if compile else EAGER


def run_steps(
    x: torch.Tensor, v: torch.Tensor, tau: float, theta: float, quant: MembraneQuant, kernels: Kernels,
    on_store: "Callable[[torch.Tensor], None] | None" = None,
):
    """The forward loop without autograd: ``(spikes [T, ...], [u[t]], last stored v)``. In
    training the running scale of ``quant`` takes the T step maxima; ``on_store`` sees every
    stored membrane. The kernels see each step flattened (elementwise work and a full max do
    not depend on the shape), so one compilation serves every layer."""
    spikes, charged, step_maxes = [], [], []
    v = v.reshape(-1)
    for x_t in x:
        x_t = x_t.reshape(-1)
        if quant.enabled:
            u, s, r, step_max = kernels.fire_with_max(v, x_t, tau, theta)
            alpha = quant.scale_from_max(step_max)
            if quant.training:
                step_maxes.append(alpha)
            v = kernels.store(r, alpha, quant.levels)
        else:
            u, s, v = kernels.fire(v, x_t, tau, theta)
        if on_store is not None:
            on_store(v)
        spikes.append(s)
        charged.append(u)
    if quant.enabled and quant.training:
        quant.track(torch.stack(step_maxes))
    return torch.stack(spikes).view(x.shape), charged, v.view(x.shape[1:])


class FusedLIF(torch.autograd.Function):
    """``spikes, v = FusedLIF.apply(x, v0, tau, theta, beta, quant, kernels, on_store)``; ``v``
    (the last stored membrane) has no gradient, as in the reference."""

    @staticmethod
    def forward(ctx, x, v, tau, theta, beta, quant, kernels, on_store):
        spikes, charged, v = run_steps(x, v, tau, theta, quant, kernels, on_store)
        ctx.save_for_backward(*charged)
        ctx.constants = (tau, theta, beta, kernels)
        ctx.mark_non_differentiable(v)
        return spikes, v

    @staticmethod
    def backward(ctx, grad_spikes, _grad_v):
        tau, theta, beta, kernels = ctx.constants
        grads, grad_v = [], None
        for u, grad_s in zip(reversed(ctx.saved_tensors), reversed(grad_spikes)):
            grad_u, grad_v = kernels.step_backward(u, grad_s.reshape(-1), grad_v, tau, theta, beta)
            grads.append(grad_u)
        return torch.stack(grads[::-1]).view(grad_spikes.shape), None, None, None, None, None, None, None
