"""Range coding under the prior: throughput and how close the real size comes to Σ −log2 p.

    PYTHONPATH=src python benchmarks/bench_coding.py [--repeats 3]

Prints, per stream length (1k, 10k, 100k codes) and alphabet size K: codes/s of `encode` and
`decode` (probability table + coder), of the bare constriction calls beside them, and the
overhead real bits / ideal bits. Then the stepwise `decode_with_prior` of a small PHi prior,
which runs the prior once per code (a verification tool).
"""

from __future__ import annotations

import argparse
import time
from importlib.metadata import version

import constriction
import numpy as np
import torch
from torch.distributions import Categorical

from qphi.evaluation import decode, decode_with_prior, encode, prior_log_probs
from qphi.phi import PHiConfig, PHiLayer


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def stream(num_codes: int, num_codes_per_stage: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """codes (2, T) drawn from random distributions log_probs (2, T, K), 2·T = num_codes."""
    gen = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(2, num_codes // 2, num_codes_per_stage, generator=gen)
    log_probs = torch.log_softmax(logits, -1)
    torch.manual_seed(seed)
    return Categorical(logits=log_probs).sample(), log_probs


def bench_streams(repeats: int) -> None:
    print(f"{'codes':>8} {'K':>5} {'encode/s':>11} {'decode/s':>11} {'bare enc/s':>11} {'bare dec/s':>11} "
          f"{'ideal bits':>11} {'real bits':>10} {'real/ideal':>10}")  # fmt: skip
    model = constriction.stream.model.Categorical(perfect=False)
    for num_codes in (1_000, 10_000, 100_000):
        for k in (64, 1000):
            codes, log_probs = stream(num_codes, k, seed=num_codes + k)
            result = encode(codes, log_probs)
            assert torch.equal(decode(result, log_probs), codes)
            t_enc = best_time(lambda: encode(codes, log_probs), repeats)  # noqa: B023
            t_dec = best_time(lambda: decode(result, log_probs), repeats)  # noqa: B023
            symbols = np.ascontiguousarray(codes.T.reshape(-1).numpy().astype(np.int32))
            table = np.ascontiguousarray(log_probs.double().exp().transpose(0, 1).reshape(-1, k).numpy())

            def bare_encode():
                encoder = constriction.stream.queue.RangeEncoder()
                encoder.encode(symbols, model, table)  # noqa: B023
                return encoder.get_compressed()

            words = bare_encode()
            t_bare_enc = best_time(bare_encode, repeats)
            t_bare_dec = best_time(
                lambda: constriction.stream.queue.RangeDecoder(words).decode(model, table),  # noqa: B023
                repeats,
            )
            print(
                f"{num_codes:>8} {k:>5} {num_codes / t_enc:>11.3g} {num_codes / t_dec:>11.3g} "
                f"{num_codes / t_bare_enc:>11.3g} {num_codes / t_bare_dec:>11.3g} "
                f"{result.information_bits:>11.1f} {result.num_bits:>10} "
                f"{result.num_bits / result.information_bits:>10.5f}"
            )


def bench_decode_with_prior() -> None:
    print("\ndecode_with_prior (stepwise, one prior pass per code; gumbel K=64, d_model=64)")
    torch.manual_seed(0)
    layer = PHiLayer(PHiConfig(d_model=64, bottleneck="gumbel", codebook_size=64)).eval()
    for steps in (64, 256):
        with torch.no_grad():
            codes = layer(torch.randn(1, steps, 64)).codes[:, 0]
        start = time.perf_counter()
        result = encode(codes, prior_log_probs(layer.prior, codes))
        t_enc = time.perf_counter() - start
        start = time.perf_counter()
        decoded = decode_with_prior(result, layer.prior, steps)
        t_dec = time.perf_counter() - start
        assert torch.equal(decoded, codes)
        print(
            f"  T={steps:>4}: encode (one prior pass) {steps / t_enc:>9.3g} codes/s, "
            f"decode {steps / t_dec:>7.3g} codes/s, real/ideal {result.num_bits / result.information_bits:.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, constriction {version('constriction')}\n")
    bench_streams(args.repeats)
    bench_decode_with_prior()


if __name__ == "__main__":
    main()
