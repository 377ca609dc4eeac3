"""Spike generation with a surrogate gradient.

Forward is the Heaviside step of Eq. 2, ``s = 1 if u >= theta else 0``; backward replaces its
derivative by the triangle of Eq. 5, ``ds/du = max(0, beta - |u - theta|)``.
"""

import torch


class TriangleSpike(torch.autograd.Function):
    """Heaviside forward (Eq. 2), triangle surrogate backward (Eq. 5).

    The input is the distance to threshold ``x = u - theta``; ``beta`` sets the half-width
    (and the peak height) of the triangle.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float) -> torch.Tensor:
        """Eq. 2: 1 where ``x >= 0``, else 0, in ``x``'s dtype; keeps ``x`` for the surrogate."""
        ctx.save_for_backward(x)
        ctx.beta = beta
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        """Eq. 5: the incoming gradient times ``max(0, beta - |x|)``; None for ``beta``."""
        (x,) = ctx.saved_tensors
        return grad_output * triangle(x, ctx.beta), None


def triangle(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 5: the surrogate ``ds/du = max(0, beta - |u - theta|)`` at ``x = u - theta``."""
    return (beta - x.abs()).clamp_min(0)


def spike(x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Spikes of ``x = u - theta`` with the triangle surrogate gradient (Eq. 2, 5)."""
    return TriangleSpike.apply(x, beta)
