"""The fused multi-step LIF: the charge / fire / reset / store loop of :class:`~qsnn_lightning.snn.neurons.LIF`
over all T steps as one autograd node with a hand-written backward pass.

The reference loop (``neuron="reference"`` in the LIF's NeuronSpec) records about a dozen autograd nodes per step,
each keeping its inputs alive until the backward pass. This path runs the steps without autograd,
keeps only the membrane before reset ``u[t]`` of every step and recomputes the rest (spike,
surrogate) in the backward pass. Forward values are those of the reference (the same spikes,
stored membranes and running scales); gradients agree up to float rounding. Per step, forward
(Eq. 1-3, 8-10) and backward::

    u[t] = tau v[t-1] + x[t]     s[t] = H(u[t] - theta)     r[t] = u[t] (1 - s[t])     v[t] = Q_u(r[t])

    g[t]     = dL/dv[t] = tau dL/du[t+1]      (0 at the last step: the final state is detached)
    dL/du[t] = (dL/ds[t] - g[t] u[t]) * sigma'(u[t]) + g[t] (1 - s[t])      sigma' of Eq. 5

since Q_u passes gradients straight through (``dQ_u/dr = 1``) and ``dL/dx[t] = dL/du[t]``. The
running scale of Q_u takes the T per-step maxima after the loop, with the arithmetic of one
update per step. The other membrane scales of :class:`~qsnn_lightning.snn.quant.MembraneQuant`::

    tanh:     v[t] = Q_u(tanh r[t])     g[t] becomes g[t] (1 - tanh^2 r[t]) in the line above
    learned:  dL/dalpha_u = sum_t sum g[t] (q[t] - n r[t] / alpha_u) / n     (q[t] the stored level)

The steps are small functions (`charge`, `reset_`, `store_`, `step_backward`) that two functions chain
over all T steps: `forward_steps` and `backward_steps`. ``compile=True`` compiles those two with
``torch.compile`` (TorchInductor: a few C++/OpenMP loops on CPU, Triton kernels on CUDA), so a
layer's T steps are one call in each pass, each step a pass or two over memory instead of one
per operation; the first use compiles (tens of seconds on a 2-core CPU, cached on disk afterwards).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .quant import MembraneQuant, compiled, integer_levels, membrane_scale
from .surrogate import triangle


def charge(v: torch.Tensor, x: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 1: the membrane before reset ``u = tau v + x``, a new tensor."""
    return (v * tau).add_(x)


def reset_(u: torch.Tensor, spiked: torch.Tensor) -> torch.Tensor:
    """Eq. 3 in place: the membrane after a hard reset ``r = u (1 - s)``."""
    return u.masked_fill_(spiked, 0.0)


def store_(r: torch.Tensor, alpha: torch.Tensor, levels: int) -> torch.Tensor:
    """Eq. 8-10 in place: the k-bit membrane ``alpha_u / n * round(n clip(r / alpha_u, -1, 1))``,
    with the arithmetic of :func:`~qsnn_lightning.snn.quant.integer_levels` and :func:`stored_value`."""
    return r.mul_(levels).div_(alpha).round_().clamp_(-levels, levels).mul_(alpha / levels)


def largest_magnitude(r: torch.Tensor) -> torch.Tensor:
    """``max |r|`` without a temporary the size of ``r``."""
    low, high = torch.aminmax(r)
    return torch.maximum(high, low.neg())


def stored_value(level: torch.Tensor, alpha: torch.Tensor, levels: int) -> torch.Tensor:
    """Eq. 8: the membrane stored at an integer ``level`` in [-n, n]: ``alpha_u / n * level``."""
    return alpha / levels * level


def step_backward(u: torch.Tensor, grad_s: torch.Tensor, grad_v: "torch.Tensor | None", tau: float, theta: float, beta: float,
                  squash: bool = False, alpha: "torch.Tensor | None" = None, levels: int = 1):
    """``(dL/du[t], dL/dv[t-1], dL/dalpha_u of this step)`` from the gradients of the step's spikes
    and of its stored membrane (``grad_v`` None: none, the last step); ``squash``: the stored
    membrane is Q_u(tanh r); ``alpha``: the learned alpha_u (else None, and so is the third)."""
    surrogate = triangle(u - theta, beta)  # Eq. 5
    if grad_v is None:
        grad_u = grad_s * surrogate
        return grad_u, tau * grad_u, None
    spiked = u >= theta
    residual = u.masked_fill(spiked, 0.0)  # r[t], the membrane after reset
    grad_alpha = None
    if alpha is not None:
        grad_alpha = (grad_v * (integer_levels(residual, alpha, levels) - levels * residual / alpha)).sum() / levels
    if squash:
        grad_v = grad_v * (1.0 - torch.tanh(residual).square())
    grad_u = (grad_s - grad_v * u) * surrogate + grad_v.masked_fill(spiked, 0.0)
    return grad_u, tau * grad_u, grad_alpha


def forward_steps(
    x: torch.Tensor, v: torch.Tensor, tau: float, theta: float, levels: "int | None",
    running: torch.Tensor, use_running: torch.Tensor, keep_stored: bool, squash: bool = False, keep_charged: bool = True,
):
    """The T steps of ``x`` (``[T, N]``) from the state ``v`` (``[N]``): ``(spikes, u, v_last,
    scales, stored)`` with the spikes and (with ``keep_charged``, else None) the membranes before
    reset ``[T, N]``, the last stored membrane, the T scales alpha_u (``[T]``; None for
    full-precision membranes, ``levels`` None) and, with ``keep_stored``, every stored membrane
    ``[T, N]`` (else None). The scale of a step is :func:`~qsnn_lightning.snn.quant.membrane_scale`
    of its max |r| (of tanh r with ``squash``). Steps are written into tensors allocated once, and a
    step works in place on one tensor of its own: ``u``, then ``r``, then the stored membrane."""
    spikes = torch.empty_like(x)
    charged = torch.empty_like(x) if keep_charged else None
    stored = torch.empty_like(x) if keep_stored else None
    scales = []
    for step, x_t in enumerate(x.unbind(0)):
        u = charge(v, x_t, tau)  # Eq. 1
        spiked = u >= theta  # Eq. 2
        spikes[step] = spiked
        if keep_charged:
            charged[step] = u
        v = reset_(u, spiked)  # Eq. 3
        if levels is not None:
            if squash:
                v.tanh_()
            alpha = membrane_scale(largest_magnitude(v), running, use_running)  # Eq. 8's alpha_u
            v = store_(v, alpha, levels)  # Eq. 8-10
            scales.append(alpha)
        if keep_stored:
            stored[step] = v
    return spikes, charged, v, torch.stack(scales) if scales else None, stored


def backward_steps(
    charged: torch.Tensor, grad_spikes: torch.Tensor, tau: float, theta: float, beta: float, squash: bool = False,
    alpha: "torch.Tensor | None" = None, levels: int = 1, grad_v: "torch.Tensor | None" = None,
):
    """``(dL/dx, dL/dalpha_u, dL/dv[-1])``: dL/dx (``[T, N]``) from the membranes before reset and
    the gradients of the spikes (both ``[T, N]``), last step first; dL/dalpha_u for a learned
    scale ``alpha`` (else None); the gradient of the state the steps started from. ``grad_v``:
    dL/dv of the last step's stored membrane, from the steps after these (None: there are none)."""
    grads = torch.empty_like(charged)
    grad_alpha = None if alpha is None else torch.zeros_like(alpha)  # one step: the stored membrane has no gradient
    for step in reversed(range(len(charged))):
        grad_u, grad_v, step_alpha = step_backward(charged[step], grad_spikes[step], grad_v, tau, theta, beta, squash, alpha, levels)
        if step_alpha is not None:
            grad_alpha = grad_alpha + step_alpha
        grads[step] = grad_u
    return grads, grad_alpha, grad_v


@dataclass(frozen=True)
class Kernels:
    """The two step loops :class:`FusedLIF` calls, :func:`forward_steps` and :func:`backward_steps`, eager or compiled."""

    forward_steps: Callable
    backward_steps: Callable


EAGER = Kernels(forward_steps, backward_steps)
COMPILED = Kernels(compiled(forward_steps), compiled(backward_steps))


def kernels(compile: bool) -> Kernels:
    """The step loops, compiled on first use with ``compile`` (dynamic shapes: one compilation
    serves every layer with the same T)."""
    return COMPILED if compile else EAGER


class FusedLIF(torch.autograd.Function):
    """``spikes, v = FusedLIF.apply(x, v0, alpha, tau, theta, beta, quant, kernels, on_store)``;
    ``v`` (the last stored membrane) has no gradient, as in the reference; ``alpha`` is the
    learned alpha_u of ``quant`` (:meth:`~qsnn_lightning.snn.quant.MembraneQuant.learned_alpha`,
    which gets a gradient) or None. In training the running scale of ``quant`` takes the T step
    maxima; ``on_store`` sees every stored membrane. The kernels see each step flattened
    (elementwise work and a full max do not depend on the shape), so one compilation serves every layer."""

    @staticmethod
    def forward(ctx, x, v, alpha, tau, theta, beta, quant: MembraneQuant, kernels: Kernels, on_store):
        """``(spikes [T, ...], last stored membrane)`` of the T steps; updates the running scale in training, shows
        ``on_store`` every stored membrane, and keeps the membranes before reset only when an input needs a gradient."""
        steps = x.shape[0]
        levels = quant.levels if quant.enabled else None
        backward = any(ctx.needs_input_grad[:3])  # the lean path's forward pass keeps nothing (snn/lean.py)
        spikes, charged, v, scales, stored = kernels.forward_steps(
            x.reshape(steps, -1), v.reshape(-1), tau, theta, levels, *quant.scale_rule(), on_store is not None,
            quant.squash, backward,
        )
        if quant.enabled and quant.training:
            quant.track(scales)
        if on_store is not None:
            for v_t in stored:
                on_store(v_t)
        if backward:
            ctx.save_for_backward(charged, alpha)
        ctx.constants = (tau, theta, beta, kernels, quant.squash, levels)
        v = v.view(x.shape[1:])
        ctx.mark_non_differentiable(v)
        return spikes.view(x.shape), v

    @staticmethod
    def backward(ctx, grad_spikes, _grad_v):
        """dL/dx, and dL/dalpha_u for a learned scale, by :func:`backward_steps`; None for the initial state and the rest."""
        tau, theta, beta, kernels, squash, levels = ctx.constants
        charged, alpha = ctx.saved_tensors
        grads, grad_alpha, _ = kernels.backward_steps(
            charged, grad_spikes.reshape(charged.shape), tau, theta, beta, squash, alpha, levels or 1,
        )
        return grads.view(grad_spikes.shape), None, grad_alpha, None, None, None, None, None, None
