"""The latent distributions that flow from a bottleneck to the prior, and their divergences.

A bottleneck emits a *posterior* q(z_t | h_t); the prior emits p(z_t | z_<t) of the same
family. PHi_t = D(q ‖ p) per stage:

* Gaussian (continuous bottleneck): KL(N(μ, σ²) ‖ N(μ_p, σ_p²)), summed over latent dims.
* Categorical (Gumbel stages): KL(Cat(q) ‖ Cat(p)).
* Hard codes (VQ, FSQ): q is one-hot, so the KL is the code length −ln p(code).

Shapes: Gaussian parameters are (B, T, D); categorical logits are (Q, B, T, K) with Q stages
(codes a stage does not have carry logit −inf); codes are (Q, B, T) int64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical, Distribution, Independent, Normal


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


def scale_gradient(x: Tensor, factor: float) -> Tensor:
    """x in the forward pass; its gradient multiplied by `factor` in the backward pass (0 = detach)."""
    if factor == 1.0:
        return x
    return x.detach() if factor == 0.0 else _ScaleGradient.apply(x, factor)


@dataclass(frozen=True)
class LatentShape:
    """What the prior must predict: a continuous vector, or one code per stage.

    A bottleneck's config says this; the prior builds its input embedding and its output head from it.
    """

    code_dim: int  # width of the latent vector z
    stage_sizes: tuple[int, ...] = ()  # codes per stage of a discrete latent; () = continuous (Gaussian head)
    logvar_range: tuple[float, float] = (-5.0, 10.0)  # clamp of the Gaussian head's log-variance

    @property
    def discrete(self) -> bool:
        return bool(self.stage_sizes)


@dataclass(frozen=True)
class GaussianParams:
    mean: Tensor  # (B, T, D)
    logvar: Tensor  # (B, T, D)

    def distribution(self) -> Distribution:
        """A torch distribution with batch shape (B, T) and event shape (D,)."""
        return Independent(Normal(self.mean, torch.exp(0.5 * self.logvar)), 1)

    def detach(self) -> GaussianParams:
        return self.scale_gradient(0.0)

    def scale_gradient(self, factor: float) -> GaussianParams:
        return GaussianParams(scale_gradient(self.mean, factor), scale_gradient(self.logvar, factor))

    def float(self) -> GaussianParams:
        return GaussianParams(self.mean.float(), self.logvar.float())


@dataclass(frozen=True)
class CategoricalParams:
    logits: Tensor  # (Q, B, T, K), unnormalised; −inf marks codes a stage does not have

    def log_probs(self) -> Tensor:
        return F.log_softmax(self.logits, dim=-1)

    def distribution(self) -> Distribution:
        """A torch Categorical with batch shape (Q, B, T)."""
        return Categorical(logits=self.logits)

    def detach(self) -> CategoricalParams:
        return self.scale_gradient(0.0)

    def scale_gradient(self, factor: float) -> CategoricalParams:
        return CategoricalParams(scale_gradient(self.logits, factor))

    def float(self) -> CategoricalParams:
        return CategoricalParams(self.logits.float())


@dataclass(frozen=True)
class CodeParams:
    """A deterministic (one-hot) posterior: the chosen code of every stage.

    `relaxed` is an optional soft assignment over the codes (the bottleneck's distance-softmax)
    whose gradient the code length passes straight through, so that without detached targets the
    PHi term can move the encoder towards predictable codes (a rate term). It never changes a value.
    """

    codes: Tensor  # (Q, B, T) int64
    num_codes: int  # K of the widest stage
    relaxed: Tensor | None = None  # (Q, B, T, K), rows summing to 1, 0 at codes a stage lacks

    def distribution(self) -> Distribution:
        return Categorical(probs=F.one_hot(self.codes, self.num_codes).float())

    def detach(self) -> CodeParams:
        return self.scale_gradient(0.0)

    def scale_gradient(self, factor: float) -> CodeParams:
        relaxed = None if self.relaxed is None or factor == 0.0 else scale_gradient(self.relaxed, factor)
        return CodeParams(self.codes, self.num_codes, relaxed)

    def float(self) -> CodeParams:
        return self


Posterior = GaussianParams | CategoricalParams | CodeParams
Prior = GaussianParams | CategoricalParams


def gaussian_kl(q: GaussianParams, p: GaussianParams) -> Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) summed over the last dimension, in nats. → (B, T)."""
    var_ratio = torch.exp(q.logvar - p.logvar)
    mean_term = (q.mean - p.mean).pow(2) * torch.exp(-p.logvar)
    return 0.5 * (p.logvar - q.logvar + var_ratio + mean_term - 1.0).sum(-1)


def categorical_kl(q: CategoricalParams, p: CategoricalParams) -> Tensor:
    """KL(q ‖ p) over the last dimension, in nats; terms with q = 0 contribute 0. → (Q, B, T)."""
    log_q, log_p = q.log_probs(), p.log_probs()
    return (log_q.exp() * _where_possible(log_q, log_q - log_p)).sum(-1)


def code_length(codes: Tensor, p: CategoricalParams, relaxed: Tensor | None = None) -> Tensor:
    """−ln p(code) per stage, in nats: the ideal length of each code under the prior. → (Q, B, T).

    With `relaxed` (Q, B, T, K) the value is unchanged and the gradient with respect to `relaxed`
    is that of Σ_k relaxed_k · (−ln p_k): the straight-through estimator of a one-hot code.
    """
    log_p = p.log_probs()
    length = -log_p.gather(-1, codes.unsqueeze(-1)).squeeze(-1)
    if relaxed is None:
        return length
    finite_log_p = log_p.detach().masked_fill(log_p == -torch.inf, 0.0)
    return length - ((relaxed - relaxed.detach()) * finite_log_p).sum(-1)


def divergence(q: Posterior, p: Prior) -> Tensor:
    """PHi per stage: D(q ‖ p) in nats, shape (Q, B, T) (Q = 1 for the Gaussian)."""
    if isinstance(q, GaussianParams) and isinstance(p, GaussianParams):
        return gaussian_kl(q, p).unsqueeze(0)
    if isinstance(q, CategoricalParams) and isinstance(p, CategoricalParams):
        return categorical_kl(q, p)
    if isinstance(q, CodeParams) and isinstance(p, CategoricalParams):
        return code_length(q.codes, p, q.relaxed)
    raise TypeError(f"no divergence between a {type(q).__name__} posterior and a {type(p).__name__} prior")


def kl_to_standard(q: Posterior) -> Tensor | None:
    """KL of the posterior to N(0, I) or to Uniform(K) (per stage, (Q, B, T)); None for hard codes."""
    if isinstance(q, GaussianParams):
        return (0.5 * (q.mean.pow(2) + q.logvar.exp() - 1.0 - q.logvar).sum(-1)).unsqueeze(0)
    if isinstance(q, CategoricalParams):
        log_q = q.log_probs()
        num_codes = torch.isfinite(q.logits).sum(-1).clamp_min(1)
        entropy = -(log_q.exp() * _where_possible(log_q, log_q)).sum(-1)
        return torch.log(num_codes.to(log_q.dtype)) - entropy
    return None


def _where_possible(log_q: Tensor, values: Tensor) -> Tensor:
    """`values` where q > 0, else 0. Masking *before* multiplying by q keeps the −inf − −inf = NaN
    of excluded codes out of the gradient as well as out of the value."""
    return torch.where(log_q > -torch.inf, values, torch.zeros_like(values))
