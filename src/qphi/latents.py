"""The latent distributions that flow from a bottleneck to the prior, PHi, and the rate terms.

A bottleneck emits a *posterior* q(z_t | h_t); the prior emits p(z_t | z_<t). PHi per stage:

* Gaussian (continuous bottleneck): KL(N(μ, σ²) ‖ N(μ_p, σ_p²)), summed over latent dims (the
  paper's definition).
* Discrete bottlenecks (SPEC §2.6): the upper layers receive codes c_t, and PHi_t is what it costs
  to send them under the prior, −ln p(c_t | c_<t) summed over stages — the range-coded size up to
  the coder's overhead. KL(q ‖ p) of the posterior the codes are drawn from in training is a
  different quantity (a bits-back rate) and is kept only as the `kl` diagnostic.

The rate term that training minimises is the expected code length of the transmitted code,
E_q[−ln p(c)] = KL(q ‖ p) + H(q), not the KL alone, which rewards broad, hedging posteriors.

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
    """A discrete posterior: the codes the upper layers receive, and the posterior q = softmax(logits)
    over each stage's codes (−inf at codes a stage does not have) that they were drawn from in
    training (at deterministic evaluation they are its mode). KL(q ‖ p) is then the bits-back rate of
    the training channel: a diagnostic, not PHi.
    """

    codes: Tensor  # (Q, B, T) int64
    logits: Tensor  # (Q, B, T, K)

    def log_probs(self) -> Tensor:
        return F.log_softmax(self.logits, dim=-1)

    def distribution(self) -> Distribution:
        """The relaxed posterior q̃ as a torch Categorical with batch shape (Q, B, T)."""
        return Categorical(logits=self.logits)

    def detach(self) -> CodeParams:
        return self.scale_gradient(0.0)

    def scale_gradient(self, factor: float) -> CodeParams:
        return CodeParams(self.codes, scale_gradient(self.logits, factor))

    def float(self) -> CodeParams:
        return CodeParams(self.codes, self.logits.float())


Posterior = GaussianParams | CodeParams
Prior = GaussianParams | CategoricalParams


def gaussian_kl(q: GaussianParams, p: GaussianParams) -> Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) summed over the last dimension, in nats. → (B, T)."""
    var_ratio = torch.exp(q.logvar - p.logvar)
    mean_term = (q.mean - p.mean).pow(2) * torch.exp(-p.logvar)
    return 0.5 * (p.logvar - q.logvar + var_ratio + mean_term - 1.0).sum(-1)


def categorical_kl(q: CategoricalParams | CodeParams, p: CategoricalParams) -> Tensor:
    """KL(q ‖ p) over the last dimension, in nats; terms with q = 0 contribute 0. → (Q, B, T)."""
    log_q, log_p = q.log_probs(), p.log_probs()
    return (log_q.exp() * _where_possible(log_q, log_q - log_p)).sum(-1)


def code_length(codes: Tensor, p: CategoricalParams) -> Tensor:
    """−ln p(code) per stage, in nats: the ideal length of each code under the prior. → (Q, B, T)."""
    return -p.log_probs().gather(-1, codes.unsqueeze(-1)).squeeze(-1)


def expected_code_length(q: CodeParams, p: CategoricalParams, entropy_weight: float | Tensor = 1.0) -> Tensor:
    """The rate of a discrete bottleneck, per stage in nats. → (Q, B, T).

    Its value is the code length −ln p(c) of the transmitted codes (so the loss reports what PHi
    reports). Its gradient is that of −ln p(c) for the prior, and, for the posterior, that of the
    expected code length E_q[−ln p] = Σ_k q_k · (−ln p_k) = KL(q ‖ p) + H(q) with p held fixed: for
    codes drawn from q, the exact gradient of the expected rate with respect to q — the analytic
    expectation of the score-function (REINFORCE, Williams 1992) estimator, so without its variance;
    the prior's reaction to q is not differentiated. `entropy_weight` < 1 takes that much of H(q)
    into the posterior's gradient (0: the bits-back rate KL(q ‖ p); see `DiscreteConfig.entropy_anneal`).
    """
    log_p = p.log_probs()
    finite_log_p = log_p.detach().masked_fill(log_p == -torch.inf, 0.0)
    log_q = q.log_probs()
    q_soft = log_q.exp()
    entropy = -(q_soft * _where_possible(log_q, log_q)).sum(-1)
    surrogate = -(q_soft * finite_log_p).sum(-1) - (1.0 - entropy_weight) * entropy
    return code_length(q.codes, p) + surrogate - surrogate.detach()


def divergence(q: Posterior, p: Prior) -> Tensor:
    """PHi per stage in nats, shape (Q, B, T) (Q = 1 for the Gaussian): the Gaussian KL, or the code
    length of the transmitted codes."""
    if isinstance(q, GaussianParams) and isinstance(p, GaussianParams):
        return gaussian_kl(q, p).unsqueeze(0)
    if isinstance(q, CodeParams) and isinstance(p, CategoricalParams):
        return code_length(q.codes, p)
    raise TypeError(f"no divergence between a {type(q).__name__} posterior and a {type(p).__name__} prior")


def kl_to_standard(q: Posterior) -> Tensor:
    """KL of the posterior to N(0, I) or to Uniform(K) (per stage, (Q, B, T))."""
    if isinstance(q, GaussianParams):
        return (0.5 * (q.mean.pow(2) + q.logvar.exp() - 1.0 - q.logvar).sum(-1)).unsqueeze(0)
    log_q = q.log_probs()
    num_codes = torch.isfinite(q.logits).sum(-1).clamp_min(1)
    entropy = -(log_q.exp() * _where_possible(log_q, log_q)).sum(-1)
    return torch.log(num_codes.to(log_q.dtype)) - entropy


def _where_possible(log_q: Tensor, values: Tensor) -> Tensor:
    """`values` where q > 0, else 0. Masking *before* multiplying by q keeps the −inf − −inf = NaN
    of excluded codes out of the gradient as well as out of the value."""
    return torch.where(log_q > -torch.inf, values, torch.zeros_like(values))
