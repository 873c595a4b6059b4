"""Evaluation: measurements of trained models, each returning typed results.

- `pfa_levels`: PHi and next-token loss per PFA learning level, on fresh samples
- `code_stream`: codebook health and range-coded size of the evaluated code streams
- `coding`: range coding of a code stream under the learned prior, and decoding it back
- `codebook_health`: utilisation, perplexity, dead codes and code lengths per stage
- `complexity`: PHi against the automata's description length, controlling for next-token loss
- `icl_competence`: how well generated sequences follow an automaton learned in context
- `nl_levels`: PHi and next-token loss per natural-language level (pretrained LLMs)
- `scoring`: per-token PHi and surprisal of texts
- `correctness`: do high-PHi reasoning chains tend to be correct?
- `stats`: bootstrap (also by cluster), correlations, partial correlations
- `results`: the typed results the experiments pool and the reports render
"""

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
