"""Evaluation: real entropy coding of code streams."""

from qphi.evaluation.coding import (
    CodingReport,
    EncodedStream,
    PosteriorCodeLengths,
    decode,
    decode_with_prior,
    encode,
    measure_coding,
    posterior_code_lengths,
    prior_log_probs,
)

__all__ = [
    "CodingReport",
    "EncodedStream",
    "PosteriorCodeLengths",
    "decode",
    "decode_with_prior",
    "encode",
    "measure_coding",
    "posterior_code_lengths",
    "prior_log_probs",
]
