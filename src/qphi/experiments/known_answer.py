"""A task whose answer is known: which inputs a PHi layer must send upward, and how many bits each
costs (SPEC §2.6).

Each row is one block of five letters, s n s n' s: s from a signal alphabet S, n and n' from a
disjoint noise alphabet N, all drawn afresh for every row (one block per row, so the prior knows a
position's role from its place in the row). The PHi layer reads each
letter's embedding alone (h_t = E[x_t]: nothing below it mixes positions), and a causal upper part
predicts the next letter from h'_≤t. What follows n (and n') is the block's s again: the upper part
can only know it if the code of the block's first s carried it. Nothing else helps: what follows n
is s, and what follows the first s is fresh noise. So an ideal layer sends

* log2 |S| bits at a block's first s (its letter is needed twice and unpredictable),
* 0 bits at n and n' (their letters never help),
* ~0 bits at the repeated s (it may send s again, but the prior then predicts it from the first).

Passing s costs ln |S| nats once and saves ln |S| nats of next-token loss twice, so it pays at any
λ_phi < 2. `run` trains such a model and measures bits per position kind, next-token loss, and
whether Σ PHi equals the code length of the transmitted codes and the range coder's output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qphi.evaluation.coding import measure_coding
from qphi.io import FloatOrNaN
from qphi.phi import PHiConfig, PHiLayer, PHiOutput
from qphi.prior.attention import CausalSelfAttention, SequenceLayout, SwiGLU
from qphi.seeding import mix_seed

LN2 = math.log(2.0)
KINDS = ("signal", "noise", "repeat")  # a block's first s; n and n'; the repeated s
BLOCK_KINDS = (0, 1, 2, 1, 2)  # the kind of each position of a block s n s n' s


@dataclass(frozen=True)
class KnownAnswerConfig:
    phi: PHiConfig  # the layer under test; its d_model is the model's width
    signal_letters: int = 8
    noise_letters: int = 8
    upper_blocks: int = 1  # causal attention + SwiGLU blocks above the layer
    steps: int = 600
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0
    eval_rows: int = 2048


@dataclass(frozen=True)
class KindResult:
    phi_bits: float  # mean PHi per position of this kind: the code length of the sent codes
    kl_bits: FloatOrNaN  # mean KL(q ‖ p) of a stochastic posterior (NaN for deterministic codes)
    nll: float  # mean next-token loss (nats) at positions of this kind


@dataclass(frozen=True)
class KnownAnswerResult:
    kinds: dict[str, KindResult]  # "signal", "noise", "repeat"
    ideal_signal_bits: float  # log2 |S|
    phi_bits_total: float  # Σ PHi over the evaluated rows, in bits
    code_length_bits_total: float | None  # Σ −log2 p(sent code) from the codes and the prior's log-probs
    coded_bits_total: int | None  # the range coder's output for the same codes (None: no codes)
    letters: int  # positions evaluated


class KnownAnswerModel(nn.Module):
    """letters (B, T) → embedding → PHi layer → causal upper blocks → next-letter logits."""

    def __init__(self, config: KnownAnswerConfig):
        super().__init__()
        width = config.phi.require_d_model()
        vocab = config.signal_letters + config.noise_letters
        self.embed = nn.Embedding(vocab, width)
        self.phi = PHiLayer(config.phi)
        heads = config.phi.prior.n_heads
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "attn_norm": nn.RMSNorm(width),
                    "attn": CausalSelfAttention(width, heads, 10_000.0),
                    "mlp_norm": nn.RMSNorm(width),
                    "mlp": SwiGLU(width, 2 * width),
                }
            )
            for _ in range(config.upper_blocks)
        )
        self.head = nn.Sequential(nn.RMSNorm(width), nn.Linear(width, vocab))

    def forward(self, letters: Tensor) -> tuple[PHiOutput, Tensor]:
        """→ the PHi layer's output and next-letter logits (B, T, vocab)."""
        out = self.phi(self.embed(letters))
        layout = SequenceLayout.build(out.mask)
        x = out.h
        for block in self.blocks:
            x = x + block["attn"](block["attn_norm"](x), layout)
            x = x + block["mlp"](block["mlp_norm"](x))
        return out, self.head(x)


def sample_rows(config: KnownAnswerConfig, rows: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Letters (rows, 5) and the kind of each position (0 signal, 1 noise, 2 repeat)."""
    s = torch.randint(0, config.signal_letters, (rows, 1), generator=generator)
    noise = config.signal_letters + torch.randint(0, config.noise_letters, (rows, 2), generator=generator)
    letters = torch.cat([s, noise[:, :1], s, noise[:, 1:], s], dim=-1)
    return letters, torch.tensor(BLOCK_KINDS).expand(rows, -1)


def train(config: KnownAnswerConfig) -> KnownAnswerModel:
    """Next-letter cross-entropy + the PHi layer's terms, AdamW, the bottleneck's schedule over the steps."""
    torch.manual_seed(config.seed)
    model = KnownAnswerModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(mix_seed(config.seed, 1))
    model.train()
    for step in range(config.steps):
        model.phi.set_progress(step / max(1, config.steps - 1))
        letters, _ = sample_rows(config, config.batch_size, generator)
        out, logits = model(letters)
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), letters[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        (nll + out.loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return model


@torch.no_grad()
def measure(model: KnownAnswerModel, config: KnownAnswerConfig) -> KnownAnswerResult:
    """Bits and next-token loss per position kind on fresh rows, in evaluation mode; the sums that
    must agree (Σ PHi, Σ −log2 p(sent code), the range-coded size)."""
    model.eval()
    letters, kinds = sample_rows(config, config.eval_rows, torch.Generator().manual_seed(mix_seed(config.seed, 2)))
    out, logits = model(letters)
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), letters[:, 1:], reduction="none")  # (B, T-1)
    phi_bits = out.phi / LN2
    kl_bits = None if out.kl_per_stage is None else out.kl_per_stage.sum(0) / LN2
    results = {}
    for index, kind in enumerate(KINDS):
        sel = kinds == index
        results[kind] = KindResult(
            phi_bits=float(phi_bits[sel].mean()),
            kl_bits=math.nan if kl_bits is None else float(kl_bits[sel].mean()),
            nll=float(nll[sel[:, :-1]].mean()),
        )
    code_length, coded = None, None
    if out.codes is not None:
        log_probs = out.prior_params.log_probs()
        code_length = float(-log_probs.gather(-1, out.codes.unsqueeze(-1)).double().sum() / LN2)
        stages = out.codes.shape[0]  # all rows in one stream: the coder's word padding is paid once
        report = measure_coding(
            out.codes.reshape(stages, 1, -1), log_probs.reshape(stages, 1, out.codes[0].numel(), -1)
        )
        coded = int(report.coded_bits.sum())
    return KnownAnswerResult(
        kinds=results,
        ideal_signal_bits=math.log2(config.signal_letters),
        phi_bits_total=float(phi_bits.double().sum()),
        code_length_bits_total=code_length,
        coded_bits_total=coded,
        letters=int(letters.numel()),
    )


def run(config: KnownAnswerConfig) -> KnownAnswerResult:
    return measure(train(config), config)
