"""Evaluation: real entropy coding of code streams, codebook health."""

from qphi.evaluation.codebook_health import (
    CodebookHealth,
    CodebookHealthAccumulator,
    StageHealth,
    codebook_health,
)
from qphi.evaluation.coding import (
    CodingReport,
    EncodedStream,
    decode,
    decode_with_prior,
    encode,
    measure_coding,
    prior_log_probs,
)

__all__ = [
    "CodebookHealth",
    "CodebookHealthAccumulator",
    "CodingReport",
    "EncodedStream",
    "StageHealth",
    "codebook_health",
    "decode",
    "decode_with_prior",
    "encode",
    "measure_coding",
    "prior_log_probs",
]
