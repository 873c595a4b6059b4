"""The character-level ASCII tokenizer of the from-scratch models (SPEC §3).

One id per character, so per-character metadata stays aligned with the token ids:
printable and control ASCII characters map to their code point (4..127); ids 0..3 are
reserved (pad 0, unknown 1, BOS 2, EOS 3, as in the reference). A non-ASCII character, or
one of the four reserved control characters, becomes the unknown id; decoding turns the
unknown id into U+FFFD and drops pad/BOS/EOS.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from qphi.errors import QPhiError

_RESERVED = 4
UNKNOWN_CHAR = "\ufffd"


class CharTokenizer:
    """ASCII characters ↔ ids 0..127 (vocab_size 128)."""

    vocab_size = 128
    pad_id = 0
    unk_id = 1
    bos_id = 2
    eos_id = 3

    def encode_array(self, text: str) -> np.ndarray:
        """(len(text),) int64 ids, one per character."""
        try:
            codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64)
        except UnicodeEncodeError:
            codes = np.fromiter((ord(c) for c in text), dtype=np.int64, count=len(text))
        return np.where((codes < _RESERVED) | (codes >= self.vocab_size), self.unk_id, codes)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Iterable[int] | np.ndarray | torch.Tensor) -> str:
        """Text of the ids; pad, BOS and EOS are dropped, the unknown id becomes U+FFFD."""
        codes = np.asarray(ids, dtype=np.int64).reshape(-1)
        if codes.size and (codes.min() < 0 or codes.max() >= self.vocab_size):
            raise QPhiError(f"token ids must lie in 0..{self.vocab_size - 1}: these came from another tokenizer")
        kept = codes[(codes >= _RESERVED) | (codes == self.unk_id)].astype(np.uint8)
        return kept.tobytes().decode("ascii").replace(chr(self.unk_id), UNKNOWN_CHAR)
