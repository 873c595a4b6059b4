"""The pretrained-LLM training mixture (SPEC §3) as a `DataSource`.

Documents come round-robin from the configured components — MATH train solutions, GSM-8k
train solutions, PFA in-context-learning chats (the SPEC's user prompt, a fresh level-3
block as the assistant turn) and optional general text — rendered with the model's chat
template. The loss covers the assistant's content only: at each of its tokens, PHi and the
loss of predicting the next token (the last one predicts the end of the turn). General text
is plain text, scored on every token.

Several documents are packed per row, each with positions restarting at 0 (a Llama-family
model then attends within each document) and its own document id (so does the prior). As
with `PFABatches`, row i of step s is a pure function of (seed, s, i): its component order
starts at the global row index and its draws come from a generator seeded by (seed, s, i).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from qphi.errors import QPhiError
from qphi.evaluation.codebook_health import CodebookHealth
from qphi.evaluation.nl_levels import NLLevels, evaluate_nl_levels
from qphi.models import PHiModel
from qphi.models.pretrained import load_tokenizer
from qphi.models.splice import IGNORE_INDEX
from qphi.seeding import mix_seed
from qphi.tasks import Batch, PFALevels
from qphi.tasks.chat import PFA_CHAT_PROMPT, encode_chat
from qphi.tasks.data_files import read_jsonl
from qphi.tasks.natural_language import load_nl_levels
from qphi.tasks.reasoning import ReasoningProblem, load_gsm8k, load_math
from qphi.training.config import RunConfig

MIN_TAIL = 16  # a row's last document is kept (truncated) if at least this many tokens fit
PFA_LEVEL = 3  # in-context language learning: a fresh automaton per block
_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM-8k's calculator annotations, e.g. <<48/2=24>>
TEXT_WINDOW_CHARS = 8  # characters of general text drawn per token of row space


@dataclass(frozen=True)
class MixtureDocument:
    """Where a packed document came from: its component and the item's index there (-1: generated)."""

    component: str
    index: int


@dataclass
class _Tokens:
    input_ids: Tensor  # (L,) int64
    loss_mask: Tensor  # (L,) bool: positions whose PHi and next-token loss count


def load_texts(paths: list[str]) -> list[str]:
    """General text documents: a .txt file is one document, a .jsonl file one per line ('text')."""
    texts = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise QPhiError(f"text file '{path}' not found: give data.mixture.text_paths existing .txt or .jsonl files")
        if path.suffix == ".jsonl":
            for number, record in enumerate(read_jsonl(path), start=1):
                if not isinstance(record.get("text"), str):
                    raise QPhiError(f"'{path}' line {number} has no 'text' string: each line must be {{\"text\": ...}}")
                texts.append(record["text"])
        else:
            try:
                texts.append(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                raise QPhiError(f"'{path}' is not UTF-8 text: convert it to UTF-8") from None
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise QPhiError("data.mixture.text_paths hold no text: give non-empty .txt or .jsonl files")
    return texts


class MixtureSource:
    """Chats from MATH, GSM-8k, PFA and general text for a frozen pretrained LLM."""

    def __init__(self, config: RunConfig, tokenizer: Any = None):
        """Reads every data file the run will need, the evaluation texts included, before loading
        the tokenizer (a first use of a GGUF model converts it): a missing file fails at once."""
        self.config = config
        mix = config.data.mixture
        self.pools: dict[str, list[ReasoningProblem] | list[str]] = {}
        if "math" in mix.components:
            self.pools["math"] = load_math(mix.math_path, "train")
        if "gsm8k" in mix.components:
            self.pools["gsm8k"] = load_gsm8k(mix.gsm8k_path, "train")
        if "text" in mix.components:
            self.pools["text"] = load_texts(mix.text_paths)
        self.eval_texts = load_nl_levels(mix.nl_levels_path)
        self.pfa = PFALevels(config.data.pfa) if "pfa" in mix.components else None
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.model.pretrained)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def document(self, component: str, generator: torch.Generator, space: int) -> tuple[_Tokens, MixtureDocument]:
        """One document of `component`, drawn with `generator`; general text is cut to about `space` tokens."""
        if component == "pfa":
            block = self.pfa.sample(PFA_LEVEL, generator)
            return self._chat(PFA_CHAT_PROMPT, block.text), MixtureDocument("pfa", -1)
        pool = self.pools[component]
        index = int(torch.randint(len(pool), (), generator=generator))
        item = pool[index]
        if component == "text":
            return self._text(item, generator, space), MixtureDocument("text", index)
        solution = _CALCULATOR.sub("", item.solution) if component == "gsm8k" else item.solution
        return self._chat(item.prompt, solution), MixtureDocument(component, index)

    def _chat(self, user: str, assistant: str) -> _Tokens:
        chat = encode_chat(self.tokenizer, user, assistant)
        return _Tokens(chat.input_ids, chat.assistant_mask)

    def _text(self, text: str, generator: torch.Generator, space: int) -> _Tokens:
        width = TEXT_WINDOW_CHARS * space
        start = int(torch.randint(max(1, len(text) - width + 1), (), generator=generator))
        ids = torch.tensor(self.tokenizer(text[start : start + width])["input_ids"], dtype=torch.int64)
        return _Tokens(ids, torch.ones_like(ids, dtype=torch.bool))

    def row(self, step: int, row: int) -> list[tuple[_Tokens, MixtureDocument]]:
        """The documents of row `row` (global index) of step `step`: whole ones while they fit, the
        next cut to the space left (if at least MIN_TAIL tokens); one (cut) document without packing."""
        data = self.config.data
        components = data.mixture.components
        generator = torch.Generator().manual_seed(mix_seed(self.config.train.seed, step, row))
        turn = step * self.config.train.batch_size + row
        space, docs = data.row_length, []
        while space >= MIN_TAIL:
            tokens, origin = self.document(components[turn % len(components)], generator, space)
            turn += 1
            docs.append((_Tokens(tokens.input_ids[:space], tokens.loss_mask[:space]), origin))
            cut = tokens.input_ids.numel() >= space
            space -= min(space, tokens.input_ids.numel())
            if not data.pack or cut:
                break
        return docs

    def batches(self, first_row: int, rows: int) -> Dataset:
        return MixtureBatches(self, first_row, rows)

    def evaluate(self, model: PHiModel, device: torch.device, step: int) -> MixtureEvaluation:
        mix = self.config.data.mixture
        evaluation = evaluate_nl_levels(
            model,
            self.tokenizer,
            self.eval_texts,
            max_tokens=mix.eval_max_tokens,
            batch_size=mix.eval_batch_size,
        )
        return MixtureEvaluation(**vars(evaluation), step=step, bottleneck=self.config.phi.bottleneck.name)


@dataclass(frozen=True, kw_only=True)
class MixtureEvaluation(NLLevels):
    """eval.json of a pretrained-LLM run: PHi and next-token loss per natural-language level and text."""

    step: int
    bottleneck: str
    codebook_health: CodebookHealth | None = None  # not measured on these texts


def pack_documents(rows: list[list[tuple[_Tokens, MixtureDocument]]], row_length: int, pad_id: int) -> Batch:
    """Lay out tokenised documents row by row (see `Batch`). meta: loss_mask and is_text (the
    positions that count), doc_index (into `documents`, -1 on padding)."""
    shape = (len(rows), row_length)
    input_ids = torch.full(shape, pad_id, dtype=torch.int64)
    targets = torch.full(shape, IGNORE_INDEX, dtype=torch.int64)
    padding_mask = torch.zeros(shape, dtype=torch.bool)
    document_ids = torch.zeros(shape, dtype=torch.int64)
    positions = torch.zeros(shape, dtype=torch.int64)
    loss_mask = torch.zeros(shape, dtype=torch.bool)
    doc_index = torch.full(shape, -1, dtype=torch.int64)
    documents: list[MixtureDocument] = []
    for r, row in enumerate(rows):
        start = 0
        for j, (tokens, origin) in enumerate(row):
            n = tokens.input_ids.numel()
            span = slice(start, start + n)
            input_ids[r, span] = tokens.input_ids
            mask = tokens.loss_mask.clone()
            mask[-1] = False  # the document's last token has no next token here
            targets[r, start : start + n - 1] = tokens.input_ids[1:].masked_fill(~mask[:-1], IGNORE_INDEX)
            loss_mask[r, span] = mask
            padding_mask[r, span] = True
            document_ids[r, span] = j
            positions[r, span] = torch.arange(n)
            doc_index[r, span] = len(documents)
            documents.append(origin)
            start += n
        document_ids[r, start:] = len(row)
        positions[r, start:] = torch.arange(row_length - start)
    meta = {"loss_mask": loss_mask, "is_text": loss_mask.clone(), "doc_index": doc_index}
    return Batch(input_ids, targets, padding_mask, document_ids, positions, meta, documents)


class MixtureBatches(Dataset):
    def __init__(self, source: MixtureSource, first_row: int, rows: int):
        self.source = source
        self.first_row = first_row
        self.rows = rows

    def __len__(self) -> int:
        return self.source.config.train.steps

    def __getitem__(self, step: int) -> Batch:
        rows = [self.source.row(step, self.first_row + i) for i in range(self.rows)]
        return pack_documents(rows, self.source.config.data.row_length, self.source.pad_id)
