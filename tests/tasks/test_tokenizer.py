"""The character-level ASCII tokenizer: one id per character, reserved ids, round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from qphi.errors import QPhiError
from qphi.tasks import CharTokenizer
from qphi.tasks.tokenizer import UNKNOWN_CHAR

TOK = CharTokenizer()
PLAIN_ASCII = st.text(alphabet=st.characters(min_codepoint=4, max_codepoint=127))


def test_reserved_ids():
    assert (TOK.vocab_size, TOK.pad_id, TOK.unk_id, TOK.bos_id, TOK.eos_id) == (128, 0, 1, 2, 3)
    assert TOK.encode("a b\n") == [97, 32, 98, 10]


@given(PLAIN_ASCII)
def test_ascii_round_trip(text):
    ids = TOK.encode(text)
    assert len(ids) == len(text)
    assert all(4 <= i < 128 for i in ids)
    assert TOK.decode(ids) == text


@given(st.text())
def test_any_text_gets_one_id_per_character(text):
    ids = TOK.encode(text)
    assert len(ids) == len(text) and all(0 <= i < 128 for i in ids)
    expected = "".join(c if 4 <= ord(c) < 128 else UNKNOWN_CHAR for c in text)
    assert TOK.decode(ids) == expected
    assert np.array_equal(TOK.encode_array(text), np.array(ids, dtype=np.int64))


def test_non_ascii_and_reserved_characters_become_unknown():
    assert TOK.encode("é\x00\x02€a") == [1, 1, 1, 1, 97]
    assert TOK.decode(TOK.encode("naïve")) == "na\ufffdve"


def test_decode_drops_pad_bos_eos_and_accepts_tensors():
    assert TOK.decode(torch.tensor([[2, 104, 105, 3, 0, 0]])) == "hi"
    with pytest.raises(QPhiError, match=r"0\.\.127"):
        TOK.decode([200])
