"""The PHi layer sits on the main path after block L (SPEC §2.1): the hidden state it reads is
the output of block L, and the blocks above it receive its reconstruction h' and nothing else."""

from __future__ import annotations

import pytest
import torch

from qphi.configuration import build
from qphi.errors import QPhiError
from qphi.models import ModelConfig, PHiModel, ResidualLSTM, build_transformer
from qphi.phi import PHiConfig

from .hosts import DEPTH, VOCAB, WIDTH, PHiSpy, tiny_model

ARCHITECTURES = ("transformer", "lstm")
PLACEMENTS = (0, 1, DEPTH - 1)
T = 12


def run_blocks(model: PHiModel, x: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """Blocks first..last-1 of the host applied by hand to x (B, T, D), outside the splice."""
    if isinstance(model.base, ResidualLSTM):
        for layer in model.base.layers[first:last]:
            x = layer(x)
        return x
    llama = model.base.model
    positions = torch.arange(x.shape[1]).unsqueeze(0)
    rotary = llama.rotary_emb(x, position_ids=positions)
    for block in llama.layers[first:last]:
        x = block(x, attention_mask=None, position_embeddings=rotary, position_ids=positions)
    return x


def embed(model: PHiModel, ids: torch.Tensor) -> torch.Tensor:
    return model.base.embed(ids) if isinstance(model.base, ResidualLSTM) else model.base.model.embed_tokens(ids)


def read_out(model: PHiModel, x: torch.Tensor) -> torch.Tensor:
    if isinstance(model.base, ResidualLSTM):
        return model.base.head(model.base.norm(x))
    return model.base.lm_head(model.base.model.norm(x))


def tokens(seed: int, batch: int = 2) -> torch.Tensor:
    return torch.randint(4, VOCAB, (batch, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("layer", PLACEMENTS)
@torch.no_grad()
def test_phi_layer_reads_the_output_of_block_l(architecture, layer, monkeypatch):
    model = tiny_model(architecture, layer)
    spy = PHiSpy(model, monkeypatch)
    ids = tokens(0)
    model(ids)
    expected = run_blocks(model, embed(model, ids), 0, layer + 1)
    assert len(spy.inputs) == 1
    torch.testing.assert_close(spy.inputs[0], expected, rtol=1e-5, atol=1e-5)
    # and not the output of any other block
    for other in range(DEPTH):
        if other != layer:
            assert not torch.allclose(spy.inputs[0], run_blocks(model, embed(model, ids), 0, other + 1), atol=1e-3)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("layer", PLACEMENTS)
@pytest.mark.parametrize("replacement", ["zeros", "random"])
@torch.no_grad()
def test_upper_blocks_receive_only_the_phi_layer_output(architecture, layer, replacement, monkeypatch):
    """Whatever the PHi layer hands on is exactly what the blocks above L compute from; the
    input tokens reach the logits through it alone (no skip connection around the bottleneck)."""
    model = tiny_model(architecture, layer)
    generator = torch.Generator().manual_seed(1)
    x = torch.zeros(2, T, WIDTH) if replacement == "zeros" else torch.randn(2, T, WIDTH, generator=generator)
    PHiSpy(model, monkeypatch, replacement=x)
    logits = model(tokens(0)).logits
    torch.testing.assert_close(logits, read_out(model, run_blocks(model, x, layer + 1, DEPTH)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(tokens(1)).logits, logits, rtol=0, atol=0)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@torch.no_grad()
def test_unreplaced_output_is_the_reconstruction(architecture, monkeypatch):
    """Without interference the upper blocks compute from the layer's own h' = decode(z)."""
    model = tiny_model(architecture, 1)
    spy = PHiSpy(model, monkeypatch)
    logits = model(tokens(0)).logits
    expected = read_out(model, run_blocks(model, spy.outputs[0].h, 2, DEPTH))
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(spy.outputs[0].h, spy.inputs[0], atol=1e-3)  # h' is not h


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("layer", [-1, DEPTH, DEPTH + 5])
def test_a_layer_index_outside_the_model_is_a_user_error(architecture, layer):
    base = build_transformer(ModelConfig(d_model=WIDTH, n_layers=DEPTH, n_heads=2))
    if architecture == "lstm":
        base = ResidualLSTM(VOCAB, WIDTH, DEPTH)
    with pytest.raises(QPhiError, match=f"0..{DEPTH - 1}"):
        PHiModel(base, PHiConfig(d_model=WIDTH, prior={"n_heads": 2}), layer)
    if layer >= 0:
        with pytest.raises(QPhiError, match="phi_after"):
            build(ModelConfig, {"architecture": architecture, "n_layers": DEPTH, "phi_after": layer})


def test_lstm_refuses_packed_rows():
    model = tiny_model("lstm", 0)
    positions = torch.cat([torch.arange(5), torch.arange(T - 5)]).expand(2, T)
    with pytest.raises(QPhiError, match=r"data\.pack=false"):
        model(tokens(0), positions=positions)


@pytest.mark.parametrize("bottleneck", ["continuous", "gumbel", "residual"])
@torch.no_grad()
def test_packed_rows_give_the_logits_and_phi_of_documents_run_separately(bottleneck):
    """Two rows, each packing several documents and some padding; every document must come out
    as if it had its own row (the base attends within documents, the prior restarts at each)."""
    model = tiny_model("transformer", 1, bottleneck)
    row_docs = [[5, 9, 7], [1, 14, 3]]  # document lengths; row length 24 leaves padding in row 0
    length = 24
    ids = torch.randint(4, VOCAB, (2, length), generator=torch.Generator().manual_seed(3))
    positions = torch.zeros(2, length, dtype=torch.long)
    document_ids = torch.zeros(2, length, dtype=torch.long)
    padding = torch.zeros(2, length, dtype=torch.bool)
    spans = []
    for row, lengths in enumerate(row_docs):
        start = 0
        for doc, n in enumerate(lengths):
            positions[row, start : start + n] = torch.arange(n)
            document_ids[row, start : start + n] = doc
            spans.append((row, start, n))
            start += n
        padding[row, :start] = True
        positions[row, start:] = torch.arange(length - start)
        document_ids[row, start:] = len(lengths)
    packed = model(ids, padding_mask=padding, document_ids=document_ids, positions=positions)
    for row, start, n in spans:
        alone = model(ids[row : row + 1, start : start + n])
        torch.testing.assert_close(packed.logits[row, start : start + n], alone.logits[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(packed.phi.phi[row, start : start + n], alone.phi.phi[0], rtol=1e-4, atol=1e-5)
        # the next-token loss stops at the document's end: no target reaches into the next document
        torch.testing.assert_close(packed.nll[row, start : start + n - 1], alone.nll[0, :-1], rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_packed_rows_differ_without_restarting_positions():
    """The check above has teeth: the same row read as one sequence changes later documents."""
    model = tiny_model("transformer", 1, "continuous")
    ids = tokens(4, batch=1)
    whole = model(ids).logits
    alone = model(ids[:, 5:]).logits
    assert not torch.allclose(whole[0, 5:], alone[0], atol=1e-3)


def test_frozen_base_trains_only_the_phi_layer_through_the_frozen_top():
    torch.manual_seed(0)
    config = ModelConfig(d_model=WIDTH, n_layers=DEPTH, n_heads=2, phi_after=1, max_length=64)
    phi = PHiConfig(
        d_model=WIDTH,
        bottleneck="continuous",
        prior={"n_heads": 2},
        loss={"phi": 0.0, "self_critic": 0.0},  # only the next-token loss: it must reach the PHi layer
    )
    model = PHiModel(build_transformer(config), phi, 1, freeze_base=True).train()
    assert not model.base.training  # a frozen base keeps its inference behaviour
    model(tokens(0)).loss.backward()
    assert all(p.grad is None for p in model.base.parameters())
    decoder_grad = model.phi.bottleneck.decode.weight.grad
    assert decoder_grad is not None and float(decoder_grad.abs().sum()) > 0
    assert set(model.trainable_state_dict()) == {f"phi.{k}" for k in model.phi.state_dict()}


def test_tied_embeddings_appear_once_in_the_trainable_state():
    model = tiny_model("transformer", 0)
    assert model.base.lm_head.weight is model.base.model.embed_tokens.weight
    state = model.trainable_state_dict()
    assert "base.model.embed_tokens.weight" in state and "base.lm_head.weight" not in state
    full = model.state_dict()
    assert set(full) - set(state) == {"base.lm_head.weight"}
