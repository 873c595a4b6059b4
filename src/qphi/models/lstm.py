"""A stack of residual LSTM layers (RMSNorm → LSTM → add) with tied embeddings (SPEC §3)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from torch import Tensor, nn

from qphi.errors import QPhiError


class LSTMBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.RMSNorm(width)
        self.lstm = nn.LSTM(width, width, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.lstm(self.norm(x))[0]


class ResidualLSTM(nn.Module):
    """Character LSTM language model. It reads one document per row: an LSTM's state would
    leak across packed documents, so packed input is refused."""

    def __init__(self, vocab_size: int, width: int, n_layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.layers = nn.ModuleList(LSTMBlock(width) for _ in range(n_layers))
        self.norm = nn.RMSNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.embed.weight
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, input_ids: Tensor, position_ids: Tensor | None = None, **_: Any) -> SimpleNamespace:
        if position_ids is not None and bool((position_ids[:, 1:] < position_ids[:, :-1]).any()):
            raise QPhiError("the LSTM model cannot read packed rows: set data.pack=false (one document per row)")
        x = self.embed(input_ids)
        for block in self.layers:
            x = block(x)
        return SimpleNamespace(logits=self.head(self.norm(x)))
