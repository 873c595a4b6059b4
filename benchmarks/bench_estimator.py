"""PHi as a code length on a source of known information: how close each bottleneck's trained
prior comes to the source's entropy rate.

    PYTHONPATH=src python benchmarks/bench_estimator.py [--steps 1500] [--pfa-seed 0] [--length 48]

Draws a PFA with the SPEC §4.1 ranges (from --pfa-seed), trains a letter coder per bottleneck
(`qphi.experiments.known_source`: a fixed letter embedding through a PHi layer with detached
targets, the letter read back from h'), and prints in bits per letter, on 256 fresh walks of
--length letters from the start state: the exact entropy rate of such walks, the source's own
code length of the evaluated letters, PHi = the prior's code length −log2 p(code | context) of the
codes the layer sends, the KL(q ‖ p) of a Gumbel posterior (the first implementation's PHi; nan for
deterministic codes), the range-coded size of the code stream, and the entropy of the letter
frequencies (what a prior that ignored its context would pay). gap = PHi − source code length
of the same letters: the prior's KL to the source per letter (≥ 0 up to sampling noise).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from qphi.experiments.known_source import measure_on_source, source_phi_config, train_symbol_coder
from qphi.tasks import random_pfa

BOTTLENECKS = {
    "gumbel K=32": source_phi_config("gumbel", codebook_size=32),
    "vq K=32": source_phi_config("vq", codebook_size=32),
    # fewer letters than codes leave codes dead; reviving them re-seeds them on the letters' own
    # vectors, so the letter → code assignment keeps moving and the prior chases it
    "vq K=32 no revival": source_phi_config("vq", codebook_size=32, vq={"dead_code_threshold": 0.0}),
    "residual K=8 Q=2": source_phi_config("residual", codebook_size=8, num_stages=2),
    "fsq [8,8] joint": source_phi_config("fsq", fsq_levels=[8, 8], fsq_prior="joint"),
    "fsq [8,8] factorised": source_phi_config("fsq", fsq_levels=[8, 8], fsq_prior="factorised"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--pfa-seed", type=int, default=0)
    parser.add_argument("--length", type=int, default=48, help="letters per walk (training and evaluation)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pfa = random_pfa(torch.Generator().manual_seed(args.pfa_seed))
    print(f"source: {pfa}, walks of {args.length} letters; {args.steps} training steps of 32 walks")
    header = ("bottleneck", "rate", "source", "PHi", "KL", "coded", "unigram", "gap", "carries", "train s")
    print(f"{header[0]:<22}" + "".join(f"{h:>9}" for h in header[1:]))
    for name, phi in BOTTLENECKS.items():
        start = time.perf_counter()
        coder = train_symbol_coder(pfa, phi, args.steps, length=args.length)
        seconds = time.perf_counter() - start
        m = measure_on_source(coder, pfa, length=args.length)
        kl = math.nan if m.kl_bits is None else m.kl_bits
        values = (m.entropy_rate_bits, m.source_code_length_bits, m.phi_bits, kl, m.coded_bits,
                  m.unigram_entropy_bits, m.phi_bits - m.source_code_length_bits)  # fmt: skip
        print(f"{name:<22}" + "".join(f"{v:>9.3f}" for v in values) + f"{m.codes_carry_letters!s:>9}{seconds:>9.1f}")


if __name__ == "__main__":
    main()
