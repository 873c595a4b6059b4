"""Codebook health of every discrete stage: how many codes are used, how evenly, and how much
of the code stream the prior's context explains (SPEC §2.5, §5.7).

Per stage s with K_s codes, over the evaluated tokens:

* utilisation = used codes / K_s; dead codes = K_s − used (never chosen on this data);
* usage entropy H(u) of the empirical code-usage (unigram) distribution u, and its
  perplexity exp H(u) — the effective number of codes in use;
* the prior's mean conditional entropy E_t[H(p(·|context_t))] and its mean code length
  (cross-entropy) E_t[−ln p(c_t | context_t)].

H(u) is what an ideal context-free code would pay per token; the mean code length is what the
learned prior pays. Their difference (`context_gain`) is how much the context removes. H(u) is
a plug-in estimate, biased low when the tokens are few compared with K (it needs N ≫ K). The gap
between the code length and the prior's own entropy (`calibration_gap`) is ≈ 0 for a
calibrated prior, positive for an over-confident one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from qphi.errors import QPhiError
from qphi.phi.layer import PHiOutput

LN2 = math.log(2.0)


@dataclass(frozen=True)
class StageHealth:
    """One stage's health. The fields after `code_length_nats` are derived in `__post_init__`:
    written to JSON beside the measured ones, recomputed (not trusted) when a file is read back."""

    stage: int
    num_codes: int  # K_s, the codes this stage has
    num_tokens: int  # codes observed
    counts: tuple[int, ...]  # (K_s,) how often each code was chosen
    used_codes: int
    dead_codes: int
    utilisation: float  # used_codes / num_codes
    usage_entropy_nats: float  # H(u) of the code-usage distribution
    perplexity: float  # exp H(u)
    prior_entropy_nats: float | None  # E_t[H(p(·|context_t))]; None without the prior's log-probs
    code_length_nats: float | None  # E_t[−ln p(c_t|context_t)]
    context_gain_nats: float | None = field(init=False)  # H(u) − mean code length: what the context saves
    calibration_gap_nats: float | None = field(init=False)  # mean code length − mean prior entropy (≈ 0)
    usage_entropy_bits: float = field(init=False)
    prior_entropy_bits: float | None = field(init=False)
    code_length_bits: float | None = field(init=False)
    context_gain_bits: float | None = field(init=False)
    calibration_gap_bits: float | None = field(init=False)

    def __post_init__(self) -> None:
        length, entropy = self.code_length_nats, self.prior_entropy_nats
        derived = {
            "context_gain_nats": None if length is None else self.usage_entropy_nats - length,
            "calibration_gap_nats": None if length is None or entropy is None else length - entropy,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        for name in ("usage_entropy", "prior_entropy", "code_length", "context_gain", "calibration_gap"):
            nats = getattr(self, f"{name}_nats")
            object.__setattr__(self, f"{name}_bits", None if nats is None else nats / LN2)


@dataclass(frozen=True)
class CodebookHealth:
    stages: tuple[StageHealth, ...]


class CodebookHealthAccumulator:
    """Collects code usage (and optionally the prior's entropy and code length) batch by batch.

    Feed every batch with log-probs or none of them, so the prior's means cover the same tokens
    as the usage counts.
    """

    def __init__(self, stage_sizes: Sequence[int]):
        if not stage_sizes or min(stage_sizes) < 1:
            raise QPhiError(f"stage_sizes must list each stage's number of codes (>= 1), got {list(stage_sizes)}")
        self.stage_sizes = tuple(int(k) for k in stage_sizes)
        self.reset()

    def reset(self) -> None:
        self._counts = [torch.zeros(k, dtype=torch.long) for k in self.stage_sizes]
        self._entropy_sum = torch.zeros(len(self.stage_sizes), dtype=torch.float64)
        self._code_length_sum = torch.zeros(len(self.stage_sizes), dtype=torch.float64)
        self._tokens = 0
        self._with_prior: bool | None = None  # whether the batches so far came with log-probs

    def update(self, codes: Tensor, log_probs: Tensor | None = None, mask: Tensor | None = None) -> None:
        """codes (Q, B, T) or (Q, N) int64; log_probs (Q, B, T, K) or (Q, N, K), the prior's
        log-softmax; mask (B, T) or (N,) bool, True at tokens to count (default: all)."""
        num_stages = len(self.stage_sizes)
        if codes.dim() < 2 or codes.shape[0] != num_stages:
            raise QPhiError(f"codes must have shape (Q={num_stages}, ...), got {tuple(codes.shape)}")
        if mask is not None and mask.shape != codes.shape[1:]:
            raise QPhiError(
                f"the mask must have shape {tuple(codes.shape[1:])} (codes' shape after Q), got {tuple(mask.shape)}"
            )
        if log_probs is not None and (
            log_probs.shape[:-1] != codes.shape or log_probs.shape[-1] < max(self.stage_sizes)
        ):
            raise QPhiError(
                f"log_probs must have shape {(*codes.shape, max(self.stage_sizes))}, got {tuple(log_probs.shape)}"
            )
        with_prior = log_probs is not None
        if self._with_prior is not None and with_prior != self._with_prior:
            raise QPhiError(
                "feed log_probs with every batch or with none of them (the prior's means would cover other tokens)"
            )
        self._with_prior = with_prior
        keep = torch.ones(codes.shape[1:], dtype=torch.bool) if mask is None else mask.bool()
        keep = keep.to(codes.device)
        flat = codes.detach()[:, keep]  # (Q, N)
        for s, size in enumerate(self.stage_sizes):
            if flat.shape[1] and not 0 <= int(flat[s].min()) <= int(flat[s].max()) < size:
                raise QPhiError(f"stage {s} has {size} codes but got codes outside [0, {size}): check stage_sizes")
            self._counts[s] += torch.bincount(flat[s], minlength=size).cpu()
        self._tokens += flat.shape[1]
        if log_probs is not None:
            lp = log_probs.detach().double()[:, keep]  # (Q, N, K)
            terms = torch.where(torch.isfinite(lp), lp.exp() * lp, torch.zeros_like(lp))
            self._entropy_sum += -terms.sum((1, 2)).cpu()
            self._code_length_sum += -lp.gather(-1, flat.unsqueeze(-1)).sum((1, 2)).cpu()

    def update_from_output(self, out: PHiOutput) -> None:
        """Count a discrete PHi layer's codes at its real tokens, with its prior's log-probs."""
        if out.codes is None:
            raise QPhiError("codebook health needs a discrete bottleneck: the continuous one emits no codes")
        self.update(out.codes, out.prior_params.log_probs(), out.mask)

    def compute(self) -> CodebookHealth:
        if not self._tokens:
            raise QPhiError("no codes were counted: call update() with at least one real token before compute()")
        stages = []
        for s, counts in enumerate(self._counts):
            usage = counts.double() / self._tokens
            terms = torch.where(usage > 0, usage * usage.log(), torch.zeros_like(usage))
            entropy = max(0.0, float(-terms.sum()))  # max: a single used code gives −0.0
            used = int((counts > 0).sum())
            stages.append(
                StageHealth(
                    stage=s,
                    num_codes=counts.numel(),
                    num_tokens=self._tokens,
                    counts=tuple(counts.tolist()),
                    used_codes=used,
                    dead_codes=counts.numel() - used,
                    utilisation=used / counts.numel(),
                    usage_entropy_nats=entropy,
                    perplexity=math.exp(entropy),
                    prior_entropy_nats=float(self._entropy_sum[s]) / self._tokens if self._with_prior else None,
                    code_length_nats=float(self._code_length_sum[s]) / self._tokens if self._with_prior else None,
                )
            )
        return CodebookHealth(stages=tuple(stages))


HEALTH_SCALARS = (
    "utilisation",
    "perplexity",
    "dead_codes",
    "usage_entropy_bits",
    "prior_entropy_bits",
    "code_length_bits",
)


def health_scalars(health: CodebookHealth) -> dict[str, float]:
    """Flattened for metric logs: {"stage0/utilisation": …, …}, without the per-code counts (K
    numbers per stage) and values that are None."""
    return {
        f"stage{stage.stage}/{key}": getattr(stage, key)
        for stage in health.stages
        for key in HEALTH_SCALARS
        if getattr(stage, key) is not None
    }


def codebook_health(
    codes: Tensor,
    stage_sizes: Sequence[int],
    log_probs: Tensor | None = None,
    mask: Tensor | None = None,
) -> CodebookHealth:
    """Codebook health of one evaluation set (shapes as in `CodebookHealthAccumulator.update`)."""
    accumulator = CodebookHealthAccumulator(stage_sizes)
    accumulator.update(codes, log_probs, mask)
    return accumulator.compute()
