"""Real entropy coding of a code stream under the learned prior (SPEC §2.5).

For a discrete bottleneck the PHi of a hard code is a code length, −ln p(c_t | c_<t). This
module checks that claim with a real coder: a range coder (`constriction`) driven by the
prior's per-step distributions turns the codes into words of 32 bits, and the compressed
size must be Σ −log2 p(code) plus a few bits. Decoding must give the codes back exactly.

Coding order. Within a time step stage s is predicted from stages < s (coarse to fine), so a
sequence is coded time-major: t = 0..T−1 and, inside each step, s = 0..Q−1. Positions outside
the mask (padding) are not coded.

Probabilities. The coder quantises each distribution to integers at 24-bit precision and
gives every symbol of the alphabet at least one unit (2⁻²⁴), so a valid code of tiny (or
float-underflowed) probability still encodes, for at most ~24 bits. Codes whose log-probability
is −inf (codes a stage does not have) are refused at encoding; their slots keep the one-unit
floor, which costs at most K·2⁻²⁴ of the mass (≈ K·1e-7 bits per code).

What the PHi of a discrete layer is. The upper layers receive codes c_t (sampled from a Gumbel
posterior in training, its argmax at deterministic evaluation, the nearest code for VQ, FSQ and LFQ),
and the layer reports PHi_t = −ln p(c_t | c_<t): exactly what this coder pays per code, up to its
overhead. A Gumbel posterior q also has KL(q ‖ p) = CE(q, p) − H(q), the rate of bits-back coding
a *sample* of q; it is reported beside PHi as a diagnostic (`out.kl_per_stage`), never as PHi.
It is not the code length of the argmax stream whatever the temperature: q, and so its KL, are
what the posterior's logits make them, and a broad q near the prior has a small KL while its argmax
is decided by noise and costs about ln K.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import constriction
import numpy as np
import torch
from torch import Tensor

from qphi.errors import QPhiError
from qphi.prior.attention import SequenceLayout
from qphi.prior.prior import AutoregressivePrior

WORD_BITS = 32
LN2 = math.log(2.0)
# one categorical model family for every symbol; its parameters are each symbol's probabilities
_MODEL = constriction.stream.model.Categorical(perfect=False)


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one thread: the encoder's and decoder's kernels then split no work
    differently, and the many small, memory-bound passes here run faster than with threads
    that contend (also usable as a decorator)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class EncodedStream:
    """One sequence's codes, range-coded under given distributions."""

    words: np.ndarray  # (W,) uint32: the compressed stream
    num_symbols: int  # codes in the stream: Q · (number of coded steps)
    information_bits: float  # Σ −log2 p(code): the ideal length the coder approaches

    @property
    def num_bits(self) -> int:
        """The real compressed size: whole 32-bit words."""
        return WORD_BITS * int(self.words.size)

    @property
    def overhead_bits(self) -> float:
        return self.num_bits - self.information_bits


@_single_thread()
def encode(codes: Tensor, log_probs: Tensor, mask: Tensor | None = None) -> EncodedStream:
    """Range-code one sequence's codes (Q, T) under log_probs (Q, T, K) = log p(code | context).

    mask (T,) bool selects the coded steps (default: all). One call into the coder encodes the
    whole stream; the distributions may come from anywhere (teacher-forced).
    """
    mask = _check_stream(codes, log_probs, mask)
    codes, log_probs = codes.detach().cpu().long(), log_probs.detach().cpu()
    picked = log_probs.gather(-1, codes.unsqueeze(-1)).squeeze(-1)[:, mask].double()  # (Q, T_real)
    if not bool(torch.isfinite(picked).all()):
        s, t = (int(i) for i in torch.nonzero(~torch.isfinite(picked))[0])
        raise QPhiError(
            f"code {int(codes[:, mask][s, t])} at stage {s}, coded step {t} has probability 0 under the "
            "given distribution: pass the prior's log-probs of these codes (−inf marks codes a stage does not have)"
        )
    table = _probability_table(log_probs, mask)
    if table.size and np.abs(table.sum(-1) - 1.0).max() > 1e-3:
        raise QPhiError("log_probs are not normalised: pass log_softmax(logits), not logits")
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(_symbols(codes, mask), _MODEL, table)
    return EncodedStream(
        words=encoder.get_compressed(),
        num_symbols=int(picked.numel()),
        information_bits=float(-picked.sum() / LN2),
    )


@_single_thread()
def decode(stream: EncodedStream, log_probs: Tensor, mask: Tensor | None = None) -> Tensor:
    """Invert `encode` given the same distributions (Q, T, K) and mask. → codes (Q, T) int64.

    Steps outside the mask were not coded and come back as code 0.
    """
    num_stages, steps, _ = log_probs.shape
    mask = _check_mask(mask, steps)
    log_probs = log_probs.detach().cpu()
    _check_length(stream, num_stages * int(mask.sum()))
    decoder = constriction.stream.queue.RangeDecoder(stream.words)
    flat = torch.from_numpy(decoder.decode(_MODEL, _probability_table(log_probs, mask)).astype(np.int64))
    codes = torch.zeros(num_stages, steps, dtype=torch.long)
    codes[:, mask] = flat.view(-1, num_stages).T
    picked = log_probs.gather(-1, codes.unsqueeze(-1)).squeeze(-1)[:, mask]
    if not bool(torch.isfinite(picked).all()):
        raise QPhiError(
            "decoded a code of probability 0: the stream was not encoded under these distributions "
            "(decode with the log-probs and mask it was encoded with)"
        )
    return codes


def prior_log_probs(
    prior: AutoregressivePrior,
    codes: Tensor,
    mask: Tensor | None = None,
    document_ids: Tensor | None = None,
) -> Tensor:
    """The coding distributions of one sequence, computed exactly as `decode_with_prior` will.

    codes (Q, T) int64; mask (T,) bool; document_ids (T,) for packed documents. → log-probs
    (Q, T, K) float64. Encode with these (not with a float32 batch forward) when the stream is
    to be decoded by `decode_with_prior`: a range decoder needs bit-identical probabilities.
    """
    mask = _check_mask(mask, codes.shape[-1])
    with torch.no_grad(), _single_thread():
        return _run_prior(_coding_copy(prior), codes, _layout(mask, document_ids))


def decode_with_prior(
    stream: EncodedStream,
    prior: AutoregressivePrior,
    mask_or_length: Tensor | int,
    document_ids: Tensor | None = None,
) -> Tensor:
    """A real decoder: recover the codes (Q, T) from the stream and the prior alone.

    It never sees the codes: for each coded step t and stage s it runs the prior on the codes
    decoded so far (0 as a placeholder for the unknown rest) to get p(c_t⁽ˢ⁾ | c_<t, c_t⁽<ˢ⁾),
    then decodes one symbol. That is Q·T prior passes in a Python loop, O(Q·T²) work: a
    verification tool, not a hot path. The stream must come from `encode(codes,
    prior_log_probs(prior, codes, mask, document_ids), mask)`.

    Exactness needs the decoder's probabilities to be bit-identical to the encoder's. Both run
    a float64 copy of the prior, on one thread, on the full (1, T) sequence (a shorter prefix
    would change the kernels' rounding); a causal prior's outputs at step t then do not depend
    on the placeholders — except that the current prior forms the coarser stages' sum as
    cumsum − self, so a stage's logits carry a rounding trace (~1e-16) of its own code. In
    float64 that almost never moves a 24-bit quantised probability; an exclusive cumsum in the
    prior would make it exact by construction.
    """
    if not prior.stage_sizes:
        raise QPhiError("decode_with_prior needs a discrete prior: the continuous bottleneck has no codes to decode")
    if isinstance(mask_or_length, int):
        mask_or_length = torch.ones(mask_or_length, dtype=torch.bool)
    mask = _check_mask(mask_or_length, mask_or_length.shape[-1])
    num_stages, steps = len(prior.stage_sizes), mask.shape[0]
    _check_length(stream, num_stages * int(mask.sum()))
    coding_prior, layout = _coding_copy(prior), _layout(mask, document_ids)
    decoder = constriction.stream.queue.RangeDecoder(stream.words)
    codes = torch.zeros(num_stages, steps, dtype=torch.long)
    with torch.no_grad(), _single_thread():
        for rank, t in enumerate(torch.nonzero(mask).flatten().tolist()):
            for s in range(num_stages):
                log_probs = _run_prior(coding_prior, codes, layout)
                # the whole table, built as the encoder built it, then the one row (1, K) needed
                row = _probability_table(log_probs, mask)[rank * num_stages + s][None]
                codes[s, t] = int(decoder.decode(_MODEL, row)[0])
                if not math.isfinite(float(log_probs[s, t, codes[s, t]])):
                    raise QPhiError(
                        f"decoded an impossible code at stage {s}, step {t}: the stream was not encoded under "
                        "this prior and mask (encode with prior_log_probs of the same prior)"
                    )
    return codes


@dataclass(frozen=True)
class CodingReport:
    """Real vs ideal code length of a batch of sequences, one entry per sequence."""

    coded_bits: np.ndarray  # (B,) int64: compressed size of each sequence's stream
    ideal_bits: np.ndarray  # (B,) float64: Σ −log2 p(code), the Σ PHi bits of hard codes
    num_codes: np.ndarray  # (B,) int64: codes coded (Q · real steps)

    @property
    def overhead_bits(self) -> np.ndarray:
        return self.coded_bits - self.ideal_bits

    @property
    def ratio(self) -> np.ndarray:
        """coded / ideal per sequence (nan where both are 0, inf where only the ideal is)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.coded_bits / self.ideal_bits

    @property
    def total_ratio(self) -> float:
        return float(self.coded_bits.sum() / self.ideal_bits.sum())

    def to_dict(self) -> dict:
        """JSON-ready; undefined ratios (empty or zero-information sequences) become None."""
        return {
            "coded_bits": self.coded_bits.tolist(),
            "ideal_bits": self.ideal_bits.tolist(),
            "num_codes": self.num_codes.tolist(),
            "ratio": [_json_float(x) for x in self.ratio],
            "total_coded_bits": int(self.coded_bits.sum()),
            "total_ideal_bits": float(self.ideal_bits.sum()),
            "total_ratio": _json_float(self.total_ratio),
        }


def measure_coding(codes: Tensor, log_probs: Tensor, mask: Tensor | None = None, verify: bool = True) -> CodingReport:
    """Encode every sequence of a batch on its own and compare with Σ −log2 p(code).

    codes (Q, B, T) int64; log_probs (Q, B, T, K), e.g. `out.prior_params.log_probs()`;
    mask (B, T) bool, e.g. `out.mask`. With `verify` each stream is decoded again and checked.
    Each stream ends on a whole word, so short sequences pay up to ~64 bits of overhead.
    """
    if codes.dim() != 3 or log_probs.dim() != 4:
        raise QPhiError(
            f"measure_coding takes codes (Q, B, T) and log_probs (Q, B, T, K), got {tuple(codes.shape)} and "
            f"{tuple(log_probs.shape)}"
        )
    batch = codes.shape[1]
    mask = torch.ones(codes.shape[1:], dtype=torch.bool) if mask is None else mask.bool().cpu()
    codes = codes.detach().cpu()
    coded, ideal, count = np.zeros(batch, np.int64), np.zeros(batch), np.zeros(batch, np.int64)
    for b in range(batch):
        stream = encode(codes[:, b], log_probs[:, b], mask[b])
        if verify:
            decoded = decode(stream, log_probs[:, b], mask[b])
            if not torch.equal(decoded[:, mask[b]], codes[:, b][:, mask[b]]):
                raise RuntimeError(f"range-coding round trip failed for sequence {b}")
        coded[b], ideal[b], count[b] = stream.num_bits, stream.information_bits, stream.num_symbols
    return CodingReport(coded_bits=coded, ideal_bits=ideal, num_codes=count)


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _probability_table(log_probs: Tensor, mask: Tensor) -> np.ndarray:
    """(Q, T, K) log-probs → (T_real · Q, K) float64 probabilities in coding order (t-major).

    Every encoder and decoder builds its tables with this one function, from same-shaped input
    and on one thread: exp's vectorised and scalar paths round differently, so where an element
    falls in the kernel's loop must not depend on who computes it.
    """
    with _single_thread():
        table = log_probs.transpose(0, 1)[mask].double().exp_()  # indexing copies: exp_ is safe
    return table.reshape(-1, log_probs.shape[-1]).numpy()


def _symbols(codes: Tensor, mask: Tensor) -> np.ndarray:
    """(Q, T) codes → (T_real · Q,) int32 in coding order."""
    return codes.transpose(0, 1)[mask].reshape(-1).numpy().astype(np.int32)


def _coding_copy(prior: AutoregressivePrior) -> AutoregressivePrior:
    """A float64 CPU copy of the prior in eval mode: the encoder's and decoder's shared calculator."""
    return copy.deepcopy(prior).to(device="cpu", dtype=torch.float64).eval()


def _run_prior(prior: AutoregressivePrior, codes: Tensor, layout: SequenceLayout) -> Tensor:
    """Log-probs (Q, T, K) of one sequence's codes (Q, T) under a coding copy of the prior."""
    return prior(codes.cpu().unsqueeze(1), layout).log_probs().squeeze(1)


def _layout(mask: Tensor, document_ids: Tensor | None) -> SequenceLayout:
    ids = None if document_ids is None else document_ids.cpu().view(1, -1)
    return SequenceLayout.build(mask.view(1, -1), ids)


def _check_mask(mask: Tensor | None, steps: int) -> Tensor:
    if mask is None:
        return torch.ones(steps, dtype=torch.bool)
    if mask.shape != (steps,):
        raise QPhiError(f"the mask must have shape ({steps},) (one flag per time step), got {tuple(mask.shape)}")
    return mask.detach().cpu().bool()


def _check_stream(codes: Tensor, log_probs: Tensor, mask: Tensor | None) -> Tensor:
    if codes.dim() != 2 or log_probs.dim() != 3 or codes.shape != log_probs.shape[:2]:
        raise QPhiError(
            f"encode takes one sequence: codes (Q, T) and log_probs (Q, T, K), got {tuple(codes.shape)} and "
            f"{tuple(log_probs.shape)}; select a row of a batch with codes[:, b], log_probs[:, b]"
        )
    in_range = codes.numel() == 0 or 0 <= int(codes.min()) <= int(codes.max()) < log_probs.shape[-1]
    if codes.dtype.is_floating_point or not in_range:
        raise QPhiError(f"codes must be integers in [0, {log_probs.shape[-1]}) (K = log_probs.shape[-1])")
    if log_probs.numel() and not float(log_probs.amax()) < math.inf:  # amax propagates nan
        raise QPhiError("log_probs contain nan or +inf: pass log-softmax outputs (−inf only for impossible codes)")
    return _check_mask(mask, codes.shape[1])


def _check_length(stream: EncodedStream, expected: int) -> None:
    if stream.num_symbols != expected:
        raise QPhiError(
            f"the stream holds {stream.num_symbols} codes but these distributions and mask describe {expected}: "
            "decode with the shapes and mask it was encoded with"
        )
