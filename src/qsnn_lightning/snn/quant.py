"""Quantizers: small objects with a precision (`bits`), a forward rule and a gradient rule.

Layers hold them; the exporter reads `bits` and the scales from them, so the quantization rules
live here and nowhere else.

Gradient rules
--------------
* Rounding and clipping to the integer range use the straight-through estimator
  (`round_clip_ste`): forward ``clip(round(x))``, backward 1. ``torch.round`` rounds half to
  even; the integer export has to match it.
* Binary weights use the *clipped* straight-through estimator: the gradient of ``sign(w_hat)``
  is 1 where ``|w_hat| < c`` and 0 elsewhere, ``c`` the window (``ste_window``): 1 is hardtanh's
  derivative, the usual choice; the standardized weights of Eq. 14 have unit variance, so a
  window of 1 stops the gradient of about a third of them, and 3 passes 99.7%. The channel
  scale ``alpha_w = mean|w_hat|`` is an ordinary differentiable function of the weights.
* 8-bit weights: straight-through rounding, the per-channel scale treated as a constant.
* Membrane potentials: straight-through rounding and clipping, so ``dQ_u/du = 1``. With the
  paper's scale nothing is clipped in training anyway, since ``alpha_u`` is the step's ``max |u|``,
  a statistic without gradient, as BatchNorm's statistics are. A learned ``alpha_u`` gets the
  gradient of the same expression, ``dQ_u/dalpha_u = (q - n u / alpha_u) / n`` (q the level),
  scaled by LSQ's ``1 / sqrt(N n)`` (Esser et al. 2020; N neurons per sample).
"""

from functools import cache

import torch
from torch import nn

FULL_PRECISION_BITS = 32


def round_clip_ste(x: torch.Tensor, limit: int) -> torch.Tensor:
    """``clip(round(x), -limit, limit)`` forward, identity backward (straight-through estimator)."""
    return x + (torch.round(x).clamp(-limit, limit) - x).detach()


def integer_levels(u: torch.Tensor, alpha: torch.Tensor, levels: int) -> torch.Tensor:
    """``round(n * clip(u / alpha_u, -1, 1))`` with ``n = levels``: each potential's level in
    [-n, n] (Eq. 8-9; clip(round(n x)) equals round(n clip(x)) because n is an integer)."""
    return torch.round(levels * u / alpha).clamp(-levels, levels)


def _per_channel(reduce, w: torch.Tensor) -> torch.Tensor:
    """Reduce ``w`` over every dimension but the first (output channels), keeping dims."""
    return reduce(w, dim=tuple(range(1, w.dim())), keepdim=True)


class FullPrecisionWeight(nn.Module):
    """32-bit weights (the 32w baseline): the identity."""

    bits = FULL_PRECISION_BITS

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """``w`` unchanged."""
        return w

    def integer_weights(self, w: torch.Tensor):
        """Raises ValueError: 32w weights have no integer form to export."""
        raise ValueError("full-precision (32w) weights have no integer form; train a 1w model to export")


class IntWeight(nn.Module):
    """Symmetric per-output-channel integer weights (8-bit for the first and last layers).

    ``scale_c = max|w_c| / (2^(b-1) - 1)``, ``Q(w) = scale_c * round(w / scale_c)``.

    Besides ``forward`` (differentiable), the quantizers with integer weights share the interface
    :class:`~qsnn_lightning.snn.layers.QuantizedWeightOp` uses to keep only small statistics between
    the passes: ``quantize(w) -> (Q(w), stats)``, ``requantize(w, stats) -> Q(w)`` (cheap, the
    same values) and ``vjp(w, grad, stats) -> dL/dW``.
    """

    def __init__(self, bits: int = 8):
        super().__init__()
        if not 2 <= bits <= 16:
            raise ValueError(f"integer weights need 2..16 bits, got {bits}")
        self.bits = bits
        self.qmax = 2 ** (bits - 1) - 1

    def scale(self, w: torch.Tensor) -> torch.Tensor:
        """``scale_c = max|w_c| / qmax`` per output channel (no gradient, never 0), shaped to broadcast over ``w``."""
        return (_per_channel(torch.amax, w.detach().abs()) / self.qmax).clamp_min(torch.finfo(w.dtype).tiny)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """``Q(w) = scale_c * clip(round(w / scale_c))``, the rounding straight-through."""
        scale = self.scale(w)
        return round_clip_ste(w / scale, self.qmax) * scale

    def quantize(self, w: torch.Tensor):
        """``(Q(w), (scale,))``: the quantized weight and the statistics :meth:`requantize` takes."""
        scale = self.scale(w)
        return self.requantize(w, (scale,)), (scale,)

    def requantize(self, w: torch.Tensor, stats) -> torch.Tensor:
        """``Q(w)`` again from the kept ``(scale,)``."""
        (scale,) = stats
        return self.codes(w, scale) * scale

    def codes(self, w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``round(w / scale)`` clipped to [-qmax, qmax] (float)."""
        return torch.round(w / scale).clamp(-self.qmax, self.qmax)

    def vjp(self, w: torch.Tensor, grad: torch.Tensor, stats) -> torch.Tensor:
        """dL/dW given dL/dQ(W): the straight-through estimator passes it unchanged."""
        return grad

    def integer_weights(self, w: torch.Tensor):
        """(codes in [-qmax, qmax] as int32, per-channel scale) with ``codes * scale == forward(w)``."""
        scale = self.scale(w)
        return self.codes(w.detach(), scale).to(torch.int32), scale.flatten()


def _group_mean(per_row: torch.Tensor, standardize: str, fan_in: int) -> torch.Tensor:
    """The mean over each standardization group (the layer, or one output channel) of a
    quantity given by its ``[C, 1]`` row sums over a ``[C, fan_in]`` weight."""
    if standardize == "layer":
        return per_row.sum() / per_row.numel() / fan_in
    return per_row / fan_in


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_k a[c, k] b[c, k]`` as ``[C, 1]`` (row by row: accurate, no product tensor)."""
    return torch.linalg.vecdot(a, b, dim=1).unsqueeze(1)


def standardization(w: torch.Tensor, standardize: str, eps: float):
    """``(W - mu, mu, sigma)``: the centred weights and the statistics of Eq. 14 over a ``[C, K]``
    weight, one mean and (population) std per layer or per output channel; ``(W, 0, 1)`` for
    ``"none"``. ``w_hat = (W - mu) / sigma``."""
    if standardize == "none":
        return w, w.new_zeros(()), w.new_ones(())
    mu = w.mean() if standardize == "layer" else w.mean(dim=1, keepdim=True)
    centred = w - mu
    sigma = torch.sqrt(_group_mean(_row_dot(centred, centred), standardize, w.shape[1]) + eps)
    return centred, mu, sigma


def binarize(w: torch.Tensor, standardize: str, eps: float):
    """Eq. 6-7 on the standardized ``[C, K]`` weights (Eq. 14): ``(alpha_w sign(w_hat), (mu,
    sigma, alpha_w))``, the statistics being all :func:`rebinarize` and :func:`binarize_backward`
    need. ``alpha_w = mean|W - mu| / sigma`` (= mean|w_hat|, without dividing every weight), and
    ``sign(w_hat)`` is the sign bit of ``W - mu`` (that of w_hat, sigma being positive), taken by
    :func:`torch.copysign`: +1 for w_hat = 0 (Eq. 7), as for every zero standardization can
    produce (only a weight stored as -0.0 with a mean of exactly 0 would count as negative)."""
    centred, mu, sigma = standardization(w, standardize, eps)
    alpha = centred.abs().mean(dim=1, keepdim=True) / sigma  # Eq. 6, channel-wise scale
    return torch.copysign(alpha, centred), (mu, sigma, alpha)  # Eq. 7


def rebinarize(w: torch.Tensor, mu, sigma, alpha) -> torch.Tensor:
    """The output of :func:`binarize` again from its statistics: one pass, no reduction."""
    return torch.copysign(alpha, w - mu)


BACKWARD_BLOCK = 2**18  # weights per block of rows in the eager binary backward pass (1 MiB in float32)


def _rows(statistic: torch.Tensor, block: slice) -> torch.Tensor:
    """A per-layer statistic as it is, a per-channel one (``[C, 1]``) for the rows of ``block``."""
    return statistic if statistic.dim() == 0 else statistic[block]


def _standardized_and_signs(w, mu, inverse_sigma):
    """``(w_hat, sign(w_hat))`` of some rows (the signs as :func:`binarize` takes them)."""
    w_hat = torch.sub(w, mu).mul_(inverse_sigma)
    return w_hat, torch.copysign(torch.ones_like(w_hat[:, :1]), w_hat)


def _clip_and_sum(w, grad, mu, inverse_sigma, window):
    """The first pass of :func:`binarize_backward` over some rows: clips ``grad`` in place
    (1 where |w_hat| < window: hardtanh's derivative for a window of 1) and returns the row sums
    ``(sum sign(w_hat) g, sum clipped, sum sign(w_hat), sum clipped w_hat)`` of the gradient
    before and after clipping."""
    w_hat, signs = _standardized_and_signs(w, mu, inverse_sigma)
    signed = _row_dot(signs, grad)
    clipped = grad.masked_fill_(w_hat.abs() >= window, 0.0)
    return signed, clipped.sum(dim=1, keepdim=True), signs.sum(dim=1, keepdim=True), _row_dot(clipped, w_hat)


def _finish(w, clipped, mu, inverse_sigma, alpha, through_alpha, grad_mean, projection):
    """The second pass of :func:`binarize_backward` over some rows, in place on ``clipped``."""
    w_hat, signs = _standardized_and_signs(w, mu, inverse_sigma)
    grad_hat = clipped.mul_(alpha).addcmul_(signs, through_alpha)  # the gradient w.r.t. w_hat
    return grad_hat.sub_(grad_mean).sub_(w_hat.mul_(projection)).mul_(inverse_sigma)


def binarize_backward(
    w: torch.Tensor, grad: torch.Tensor, mu, sigma, alpha, standardize: str, window: float = 1.0,
    block_rows: "int | None" = None,
):
    """dL/dW from dL/d(alpha_w sign(w_hat)) over ``[C, K]``: the clipped straight-through estimator
    through the sign (alpha_w where |w_hat| < window; a window of 1: hardtanh's derivative), the derivative of
    ``alpha_w = mean|w_hat|`` (d|x|/dx = sign x, as the forward pass takes it), then through
    Eq. 14, where mu and sigma depend on W: ``(g - mean(g) - w_hat mean(g w_hat)) / sigma`` over
    each standardized group, g being the gradient w.r.t. w_hat (for ``"none"`` the means are 0
    and sigma is 1). The means come from row sums of the clipped gradient and the signs
    (``sign(w_hat) w_hat = |w_hat|``, whose row sum is ``K alpha_w``), so one pass over W and
    dL/dQ(W) gathers every sum and one more writes the result, in place in ``grad``.
    ``block_rows`` runs both passes block by block (eager mode), so that the temporaries (w_hat
    and the signs) take a block each instead of the whole weight; the result is the same."""
    fan_in, inverse_sigma = w.shape[1], 1.0 / sigma
    blocks = [slice(start, start + block_rows) for start in range(0, len(w), block_rows)] if block_rows else [slice(None)]
    sums = [_clip_and_sum(w[rows], grad[rows], _rows(mu, rows), _rows(inverse_sigma, rows), window) for rows in blocks]
    signed, clipped_sum, sign_sum, clipped_dot = (torch.cat(parts) for parts in zip(*sums))
    through_alpha = signed / fan_in  # dL/d(alpha_w) / K
    if standardize == "none":
        grad_mean = projection = torch.zeros_like(sigma)
    else:  # group means of g = alpha_w clipped + sign(w_hat) through_alpha and of g w_hat
        grad_mean = _group_mean(alpha * clipped_sum + through_alpha * sign_sum, standardize, fan_in)
        projection = _group_mean(alpha * (clipped_dot + through_alpha * fan_in), standardize, fan_in)
    for rows in blocks:
        _finish(
            w[rows], grad[rows], _rows(mu, rows), _rows(inverse_sigma, rows), alpha[rows], through_alpha[rows],
            _rows(grad_mean, rows), _rows(projection, rows),
        )
    return grad


@cache
def compiled(function):
    """``function`` compiled once per process with torch.compile (dynamic shapes).

    Inductor's AVX2 code for these kernels (torch 2.14.1, dynamic shapes) gives NaN at random from
    finite inputs: ``ATEN_CPU_CAPABILITY=avx2 qsnn train fmnist_1w2u`` diverged at its first step,
    as it would on a CPU without AVX-512. Where Inductor would vectorize with AVX2, the kernels are
    compiled without vectorization (``cpp.simdlen=1``); AVX-512 and GPUs keep their vector code."""
    return torch.compile(function, dynamic=True, options={"cpp.simdlen": 1} if _inductor_uses_avx2() else None)


@cache
def _inductor_uses_avx2() -> bool:
    """Whether Inductor's C++ code for this CPU would be vectorized with AVX2 rather than AVX-512:
    it follows ATen's CPU capability (``ATEN_CPU_CAPABILITY`` caps both)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


class BinaryWeight(nn.Module):
    """1-bit weights ``alpha_w * sign(w_hat)`` (Eq. 6-7) with WS-DR standardization (Eq. 14).

    ``standardize``: ``"layer"`` (Eq. 14, the paper's choice: one mean and std per layer),
    ``"channel"`` (one per output channel, as in the authors' release) or ``"none"`` (plain Q-SNN).
    ``sign(0) = +1`` (Eq. 7); ``alpha_w`` is the mean ``|w_hat|`` of each output channel.
    ``ste_window``: the sign's gradient passes where ``|w_hat| < ste_window`` (module docstring).
    Between the passes only W and the statistics mu, sigma and alpha_w are kept (as
    :class:`IntWeight` describes); the backward pass recomputes w_hat from them.
    ``compile=True`` runs the three kernels through torch.compile. All of them see the weight
    as ``[out channels, fan-in]``, so one compilation serves every layer shape.
    """

    bits = 1
    STANDARDIZATIONS = ("layer", "channel", "none")

    def __init__(self, standardize: str = "layer", eps: float = 1e-5, compile: bool = False, ste_window: float = 1.0):
        super().__init__()
        if standardize not in self.STANDARDIZATIONS:
            raise ValueError(f"standardize must be one of {self.STANDARDIZATIONS}, got {standardize!r}")
        if not ste_window > 0:
            raise ValueError(f"ste_window must be > 0, got {ste_window}")
        self.standardize = standardize
        self.ste_window = float(ste_window)
        self.eps = eps
        self.compile = compile

    def kernel(self, function):
        """``function`` through :func:`compiled` when ``compile``, else as it is."""
        return compiled(function) if self.compile else function

    def standardized(self, w: torch.Tensor) -> torch.Tensor:
        """``w_hat = (W - mu) / sigma`` (Eq. 14), per layer or per output channel."""
        centred, _, sigma = standardization(w.flatten(1), self.standardize, self.eps)
        return (centred / sigma).view_as(w)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """``alpha_w sign(w_hat)`` (Eq. 6-7, 14) as one autograd node whose backward is :meth:`vjp`."""
        return _Binarize.apply(w, self)

    def quantize(self, w: torch.Tensor):
        """``(Q(w), (mu, sigma, alpha_w))`` by :func:`binarize` on the weight as ``[C, fan-in]``."""
        quantized, stats = self.kernel(binarize)(w.flatten(1), self.standardize, self.eps)
        return quantized.view_as(w), stats

    def requantize(self, w: torch.Tensor, stats) -> torch.Tensor:
        """``Q(w)`` again from the kept ``(mu, sigma, alpha_w)`` (:func:`rebinarize`)."""
        return self.kernel(rebinarize)(w.flatten(1), *stats).view_as(w)

    def vjp(self, w: torch.Tensor, grad: torch.Tensor, stats) -> torch.Tensor:
        """dL/dW given dL/dQ(W); overwrites ``grad``."""
        if self.compile:  # fused loops, no temporaries
            # The window as a constant of the graph: torch 2.14.1's Inductor fails (KeyError 'buf0'
            # in the C++ outer-loop fusion) on per-channel statistics when it is a symbolic float.
            with torch._dynamo.config.patch(specialize_float=True):
                return compiled(binarize_backward)(
                    w.flatten(1), grad.flatten(1), *stats, self.standardize, self.ste_window,
                ).view_as(w)
        block_rows = max(1, BACKWARD_BLOCK // w[0].numel())
        return binarize_backward(
            w.flatten(1), grad.flatten(1), *stats, self.standardize, self.ste_window, block_rows,
        ).view_as(w)

    def integer_weights(self, w: torch.Tensor):
        """(signs in {-1, +1} as int32, per-channel alpha_w) with ``signs * alpha == forward(w)``."""
        quantized, (_, _, alpha) = binarize(w.detach().flatten(1), self.standardize, self.eps)
        signs = torch.copysign(torch.ones_like(quantized), quantized)  # the sign bit, kept where alpha_w = 0
        return signs.to(torch.int32).view_as(w), alpha.flatten()


class _Binarize(torch.autograd.Function):
    """:meth:`BinaryWeight.quantize` as one autograd node keeping W and the statistics; its
    backward is :meth:`BinaryWeight.vjp` (a few passes over the weights instead of the dozen
    autograd nodes of the composed expression and the tensors they keep)."""

    @staticmethod
    def forward(ctx, w, quant):
        quantized, stats = quant.quantize(w)
        ctx.quant = quant
        ctx.save_for_backward(w, *stats)
        return quantized

    @staticmethod
    def backward(ctx, grad):
        w, *stats = ctx.saved_tensors
        return ctx.quant.vjp(w, grad.clone(), stats), None


MEMBRANE_SCALES = ("max", "tanh", "threshold", "learned")


def membrane_scale(step_max: torch.Tensor, running: torch.Tensor, use_running: torch.Tensor) -> torch.Tensor:
    """``alpha_u`` of Eq. 8 for one step: the running estimate (or fixed scale) where
    ``use_running``, else the step's max |u| (never 0)."""
    step_max = step_max.clamp_min(torch.finfo(step_max.dtype).tiny)
    return torch.where(use_running, running.to(step_max.dtype), step_max)


def lsq_scaled(alpha: torch.Tensor, factor: float) -> torch.Tensor:
    """``alpha`` forward (exactly: ``x - x`` is 0), its gradient times ``factor`` backward (LSQ's
    step-size gradient scale)."""
    scaled = alpha * factor
    return alpha.detach() + (scaled - scaled.detach())


class MembraneQuant(nn.Module):
    """k-bit membrane quantizer Q_u (Eq. 8-9) with a constant scale for inference.

    ``Q_u(u) = alpha_u / n * round(n * clip(u / alpha_u, -1, 1))`` with ``n = 2^(k-1) - 1`` levels
    on each side (k = 2 gives {-alpha_u, 0, +alpha_u}); ``bits = 32`` switches it off.

    ``scale`` chooses alpha_u:

    * ``"max"`` (the paper): in training the layer's ``max |u|`` at that time step, and a running
      estimate updated by exponential averaging, as BatchNorm does with its statistics; in eval
      the running estimate, so inference does not depend on the batch and the exported model has
      a constant scale (before any training step the eval path falls back to the step's max).
    * ``"tanh"`` (the authors' release): the same on ``tanh(u)``: ``v = Q_u(tanh u)``.
    * ``"threshold"``: ``alpha_u = theta``, constant.
    * ``"learned"``: a trained step size initialized to ``theta`` (LSQ's gradient, module docstring).
    """

    def __init__(self, bits: int = FULL_PRECISION_BITS, momentum: float = 0.1, scale: str = "max", theta: float = 1.0):
        super().__init__()
        if not (2 <= bits <= 16 or bits == FULL_PRECISION_BITS):
            raise ValueError(f"membrane bits k must be in 2..16 or {FULL_PRECISION_BITS} (off), got {bits}")
        if scale not in MEMBRANE_SCALES:
            raise ValueError(f"membrane scale must be one of {MEMBRANE_SCALES}, got {scale!r}")
        self.bits = bits
        self.momentum = momentum
        self.scale_mode = scale
        self.register_buffer("running_alpha", torch.tensor(float(theta) if scale == "threshold" else 0.0))
        self.register_buffer("num_steps_tracked", torch.tensor(0, dtype=torch.long))
        self.alpha = nn.Parameter(torch.tensor(float(theta))) if scale == "learned" and self.enabled else None

    @property
    def enabled(self) -> bool:
        """False for ``bits = 32``: the membrane stays in floating point."""
        return self.bits != FULL_PRECISION_BITS

    @property
    def fixed(self) -> bool:
        """True for a constant or learned alpha_u: nothing to track."""
        return self.scale_mode in ("threshold", "learned")

    @property
    def squash(self) -> bool:
        """True for the release's ``Q_u(tanh u)``."""
        return self.scale_mode == "tanh"

    @property
    def levels(self) -> int:
        """``n = 2^(k-1) - 1``: the largest integer level."""
        return 2 ** (self.bits - 1) - 1

    @property
    def calibrated(self) -> bool:
        """Whether the eval scale is known: a fixed or learned scale, or a running one that has seen a step."""
        return self.fixed or int(self.num_steps_tracked) > 0

    def inference_alpha(self) -> float:
        """The constant alpha_u of eval mode (what the exporter folds)."""
        return float(self.scale_rule()[0])

    def learned_alpha(self, like: torch.Tensor) -> "torch.Tensor | None":
        """The learned alpha_u (never below the smallest float) in the dtype of ``like`` (one step,
        ``[B, ...]``) with LSQ's gradient scale ``1 / sqrt(N n)``, N neurons per sample; None for
        the other scales."""
        if self.alpha is None:
            return None
        return lsq_scaled(self._positive_alpha().to(like.dtype), (like[0].numel() * self.levels) ** -0.5)

    def _positive_alpha(self) -> torch.Tensor:
        """The learned alpha_u, never below the smallest positive float."""
        return self.alpha.clamp_min(torch.finfo(self.alpha.dtype).tiny)

    def scale(self, u: torch.Tensor) -> torch.Tensor:
        """``alpha_u`` for this step: the step's max |u| in training (updating the running
        estimate), the running estimate in eval, or the fixed scale. Never synchronizes with the device."""
        alpha = self.scale_from_max(u.detach().abs().amax())
        if self.training:
            self.track(alpha.view(1))
        return alpha

    def scale_from_max(self, step_max: torch.Tensor) -> torch.Tensor:
        """``alpha_u`` given the step's max |u|, without updating the running estimate: the max
        itself (never 0) in training, the running estimate in eval once calibrated, or the fixed scale."""
        return membrane_scale(step_max, *self.scale_rule())

    def scale_rule(self) -> "tuple[torch.Tensor, torch.Tensor]":
        """``(running_alpha, use_running)``, the arguments :func:`membrane_scale` takes from this
        quantizer: ``use_running`` (a bool tensor, so no device sync) is true for a fixed or learned
        scale (then ``running_alpha`` is that scale), and in eval once calibrated."""
        always = self.num_steps_tracked >= 0  # True, on the buffers' device
        if self.alpha is not None:
            return self._positive_alpha().detach(), always
        if self.fixed:
            return self.running_alpha, always
        return self.running_alpha, (self.num_steps_tracked > 0) & (not self.training)

    @torch.no_grad()
    def track(self, step_maxes: torch.Tensor) -> None:
        """Fold the training scales of consecutive steps (1-D, in time order) into the running
        estimate: the first step ever initializes it, each step then moves it by ``momentum``
        (nothing to track for a fixed or learned scale)."""
        if self.fixed:
            return
        step_maxes = step_maxes.to(self.running_alpha.dtype)
        # lerp(a, a, m) == a exactly, so starting from the first max equals initializing with it.
        running = torch.where(self.num_steps_tracked == 0, step_maxes[0], self.running_alpha)
        for step_max in step_maxes:
            running = torch.lerp(running, step_max, self.momentum)
        self.running_alpha.copy_(running)
        self.num_steps_tracked += len(step_maxes)

    def integer_levels(self, u: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """``round(n * clip(u / alpha_u, -1, 1))``: each potential's level in [-n, n] (Eq. 8-9)."""
        return integer_levels(u, alpha, self.levels)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Q_u of one step ``[B, ...]`` (``Q_u(tanh u)`` for the release's scale)."""
        if not self.enabled:
            return u
        if self.squash:
            u = torch.tanh(u)
        alpha = self.learned_alpha(u) if self.alpha is not None else self.scale(u)
        # Eq. 8-9; clip(round(n x)) equals round(n clip(x)) because n is an integer.
        return alpha / self.levels * round_clip_ste(self.levels * u / alpha, self.levels)

    def extra_repr(self) -> str:
        """``bits``, ``momentum`` and the scale mode in the module's repr."""
        return f"bits={self.bits}, momentum={self.momentum}, scale={self.scale_mode}"


class InputQuant(MembraneQuant):
    """8-bit input pixels for the first layer: the rule of Eq. 8 on the (normalized) image, with
    the same calibrated scale as the membranes (the batch max in training, the running max in
    eval). Quantizing the input inside the model makes the PyTorch eval model and the exported
    integer model see the same int8 pixels; ``bits = 32`` (the 32w baseline) switches it off."""

    def __init__(self, bits: int = 8, momentum: float = 0.1):
        super().__init__(bits, momentum)
