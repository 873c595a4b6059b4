"""Put a PHi layer on the main pathway of any causal language model.

The model is split after decoder block L (0-indexed): a forward hook on block L replaces
its output hidden states h with the PHi layer's reconstruction h', so the blocks above see
only what passed the bottleneck. The same mechanism serves the from-scratch transformer
(a small `transformers` Llama), the residual LSTM and frozen pretrained LLMs; the base
model's own weights and state-dict keys stay untouched.

With a frozen base, nothing below the PHi layer requires gradients, so autograd builds no
graph for the bottom part; the next-token loss still flows back through the frozen top part
into the PHi layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qphi.errors import QPhiError
from qphi.phi import PHiConfig, PHiLayer, PHiOutput

IGNORE_INDEX = -100
_BLOCK_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "layers")


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks: Llama-style `model.layers`, GPT-2 `transformer.h`,
    GPT-NeoX `gpt_neox.layers`, or a plain `layers` list."""
    for path in _BLOCK_PATHS:
        node: Any = model
        for name in path.split("."):
            node = getattr(node, name, None)
        if isinstance(node, nn.ModuleList):
            return node
    raise QPhiError(
        f"cannot find the decoder blocks of {type(model).__name__}: expected one of {', '.join(_BLOCK_PATHS)}"
    )


@dataclass
class PHiModelOutput:
    logits: Tensor  # (B, T, V)
    nll: Tensor  # (B, T) next-token loss in nats, 0 where there is no target
    phi: PHiOutput
    target_mask: Tensor  # (B, T) bool: positions with a next-token target

    @property
    def nll_mean(self) -> Tensor:
        return self.nll.sum() / self.target_mask.sum().clamp_min(1)

    @property
    def loss(self) -> Tensor:
        """The training objective: mean next-token loss + the PHi layer's weighted terms."""
        return self.nll_mean + self.phi.loss


class PHiModel(nn.Module):
    """A causal LM with a PHi layer after decoder block `layer_index`."""

    def __init__(self, base: nn.Module, phi_config: PHiConfig, layer_index: int, freeze_base: bool = False):
        super().__init__()
        blocks = decoder_blocks(base)
        if not 0 <= layer_index < len(blocks):
            raise QPhiError(
                f"PHi layer index {layer_index} is outside the model's {len(blocks)} blocks: use 0..{len(blocks) - 1}"
            )
        self.base = base
        self.phi = PHiLayer(phi_config)
        self.layer_index = layer_index
        self.freeze_base = freeze_base
        if freeze_base:
            base.requires_grad_(False)
        self._context: dict[str, Tensor | None] | None = None
        self._phi_output: PHiOutput | None = None
        self._bottleneck_only = False
        blocks[layer_index].register_forward_hook(self._through_phi)

    def train(self, mode: bool = True) -> PHiModel:
        super().train(mode)
        if self.freeze_base:
            self.base.eval()  # a frozen base keeps its inference behaviour (e.g. no dropout)
        return self

    @contextmanager
    def generating(self) -> Iterator[None]:
        """Calls of the *base* model (e.g. `base.generate`) go through the bottleneck but not the
        prior. In evaluation every bottleneck works token by token (mean / argmax / nearest code),
        so KV-cached generation is exact and skips the prior's cost."""
        self._bottleneck_only = True
        try:
            yield
        finally:
            self._bottleneck_only = False

    def _through_phi(self, block: nn.Module, args: tuple, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        if self._context is not None:
            result = self.phi(hidden, **self._context)
            self._phi_output = result
            new = result.h
        elif self._bottleneck_only:
            new = self.phi.transmit(hidden, hidden.new_ones(hidden.shape[:2], dtype=torch.bool))
        else:  # plain use of the base model, e.g. generating with the original LLM
            return output
        return (new, *output[1:]) if isinstance(output, tuple) else new

    def forward(
        self,
        input_ids: Tensor,
        targets: Tensor | None = None,
        padding_mask: Tensor | None = None,
        document_ids: Tensor | None = None,
        positions: Tensor | None = None,
        loss_mask: Tensor | None = None,
    ) -> PHiModelOutput:
        """input_ids, targets (IGNORE_INDEX = no target), padding_mask, document_ids, positions,
        loss_mask: all (B, T). Packed rows need `positions` restarting at every document (the
        base then attends within documents only) and `document_ids` (the prior does too)."""
        kwargs: dict[str, Any] = {"input_ids": input_ids, "use_cache": False}
        if positions is not None:
            kwargs["position_ids"] = positions
        elif padding_mask is not None and not bool(padding_mask.all()):
            kwargs["attention_mask"] = padding_mask.long()
            kwargs["position_ids"] = (padding_mask.long().cumsum(-1) - 1).clamp_min(0)
        self._context = {"padding_mask": padding_mask, "document_ids": document_ids, "loss_mask": loss_mask}
        try:
            logits = self.base(**kwargs).logits
            phi = self._phi_output
        finally:
            self._context, self._phi_output = None, None
        if targets is None:
            targets = torch.full_like(input_ids, IGNORE_INDEX)
            targets[:, :-1] = input_ids[:, 1:]
            if padding_mask is not None:
                targets[:, :-1].masked_fill_(~padding_mask[:, 1:].bool(), IGNORE_INDEX)
        if loss_mask is not None:
            targets = targets.masked_fill(~loss_mask.bool(), IGNORE_INDEX)
        nll = F.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
        ).view_as(targets)
        return PHiModelOutput(logits=logits, nll=nll, phi=phi, target_mask=targets != IGNORE_INDEX)

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint must hold: everything, or only the PHi layer when the base is frozen.
        Tied tensors (e.g. input and output embeddings) appear once, under their first name."""
        seen: set[int] = set()
        state = {}
        for key, value in self.state_dict().items():
            if (self.freeze_base and not key.startswith("phi.")) or value.data_ptr() in seen:
                continue
            seen.add(value.data_ptr())
            state[key] = value
        return state
