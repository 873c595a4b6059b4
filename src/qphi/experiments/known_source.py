"""PHi as a code length, checked on a source whose information is known (SPEC §2.5).

A PFA emits letters with a known entropy rate. `SymbolCoder` feeds a PHi layer with
h_t = E[x_t], a fixed random embedding of the letter x_t, and reads the letter back from the
layer's reconstruction h'_t (cross-entropy). Reading the letter back keeps the codes
informative: different letters get different codes, so the code stream carries exactly the
letter sequence, and the prior's mean code length −log2 p(c_t | c_<t) is a model's code length
for the source. With detached targets the PHi term trains only the prior, so it is an estimator
of the source and nothing else. By Gibbs' inequality its expected code length can approach the
entropy rate only from above; the gap is the prior's KL divergence to the source per letter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qphi.evaluation.coding import measure_coding
from qphi.phi import PHiConfig, PHiLayer, PHiOutput
from qphi.seeding import mix_seed
from qphi.tasks import ALPHABET, PFA

LN2 = math.log(2.0)


def source_phi_config(bottleneck: str, d_model: int = 32, **options) -> PHiConfig:
    """A PHi layer for letter sequences: targets detached (the PHi term trains the prior alone),
    no self-critic (reading the letter back already keeps the codes apart), `options` on top."""
    settings = {
        "d_model": d_model,
        "bottleneck": bottleneck,
        "prior": {"n_heads": 2},
        "loss": {"detach_targets": True, "self_critic": 0.0},
        **options,
    }
    return PHiConfig(**settings)


class SymbolCoder(nn.Module):
    """letters (B, T) → fixed embedding h (B, T, d) → PHi layer → letter logits (B, T, |ALPHABET|)."""

    def __init__(self, phi: PHiConfig):
        super().__init__()
        self.embed = nn.Embedding(len(ALPHABET), phi.require_d_model()).requires_grad_(False)
        self.phi = PHiLayer(phi)
        self.readout = nn.Linear(phi.require_d_model(), len(ALPHABET))

    def forward(self, letters: Tensor) -> tuple[PHiOutput, Tensor]:
        out = self.phi(self.embed(letters))
        return out, self.readout(out.h)


@dataclass(frozen=True)
class SourceCodeLengths:
    """Bits per letter on fresh sequences of a known source."""

    entropy_rate_bits: float  # the source's exact entropy per letter (walks of this length)
    source_code_length_bits: float  # −log2 P_source of the evaluated letters: the source's own code length
    phi_bits: float  # the PHi the layer reports: −log2 p(code | context) under the learned prior, Σ over stages
    kl_bits: float | None  # KL(q ‖ p) of a stochastic (Gumbel) posterior, the first implementation's PHi
    coded_bits: float  # the range-coded size of the evaluated code stream under the prior
    unigram_entropy_bits: float  # entropy of the letter frequencies: the best context-free code
    reconstruction_accuracy: float  # letters read back correctly from h'
    codes_carry_letters: bool  # distinct letters got distinct codes (and each letter one code)
    letters: int  # letters evaluated

    def to_dict(self) -> dict:
        return asdict(self)


def letter_batch(pfa: PFA, sequences: int, length: int, generator: torch.Generator) -> Tensor:
    """(sequences, length) int64 letter indices of independent walks from the start state."""
    texts = pfa.sample_sequences([length] * sequences, generator)
    return torch.tensor([[ALPHABET.index(c) for c in text] for text in texts])


def train_symbol_coder(
    pfa: PFA,
    phi: PHiConfig,
    steps: int,
    batch: int = 32,
    length: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
) -> SymbolCoder:
    """Train the letter coder: read the letter back (cross-entropy) + the PHi layer's
    terms (which, with detached targets, train the prior on the codes). The bottleneck follows its
    own schedule (e.g. a Gumbel temperature) over the `steps`."""
    torch.manual_seed(seed)
    model = SymbolCoder(phi)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(mix_seed(seed, 1))
    model.train()
    for step in range(steps):
        model.phi.set_progress(step / max(1, steps - 1))
        letters = letter_batch(pfa, batch, length, generator)
        out, logits = model(letters)
        loss = F.cross_entropy(logits.flatten(0, 1), letters.flatten()) + out.loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def measure_on_source(
    model: SymbolCoder, pfa: PFA, sequences: int = 256, length: int = 32, seed: int = 1_000_003
) -> SourceCodeLengths:
    """Code lengths of fresh walks of `length` letters, next to the source's own.

    The coded size is one range-coded stream of all the sequences' codes (each still coded under
    the prior's distributions given its own past), so the ≤ 64 bits of word padding are spread
    over every letter rather than paid per sequence.
    """
    model.eval()
    letters = letter_batch(pfa, sequences, length, torch.Generator().manual_seed(seed))
    out, logits = model(letters)
    count = letters.numel()
    log_probs = out.prior_params.log_probs()  # (Q, B, T, K)
    stages = out.codes.shape[0]
    report = measure_coding(out.codes.reshape(stages, 1, -1), log_probs.reshape(stages, 1, count, -1))
    texts = ["".join(ALPHABET[i] for i in row) for row in letters.tolist()]
    frequencies = torch.bincount(letters.flatten(), minlength=len(ALPHABET)).double() / count
    frequencies = frequencies[frequencies > 0]
    joint = torch.cat([letters.reshape(1, -1), out.codes.reshape(stages, -1)]).T  # (N, 1 + Q)
    pairs, codes = torch.unique(joint, dim=0).shape[0], torch.unique(joint[:, 1:], dim=0).shape[0]
    return SourceCodeLengths(
        entropy_rate_bits=pfa.sequence_entropy(length) / length / LN2,
        source_code_length_bits=-sum(pfa.log_prob(t) for t in texts) / count / LN2,
        phi_bits=float(out.phi.mean()) / LN2,
        kl_bits=None if out.kl_per_stage is None else float(out.kl_per_stage.sum(0).mean()) / LN2,
        coded_bits=float(report.coded_bits.sum()) / count,
        unigram_entropy_bits=float(-(frequencies * frequencies.log2()).sum()),
        reconstruction_accuracy=float((logits.argmax(-1) == letters).double().mean()),
        codes_carry_letters=pairs == codes == int(torch.unique(letters).numel()),
        letters=count,
    )
