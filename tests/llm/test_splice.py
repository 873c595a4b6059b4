"""A PHi layer spliced into a (tiny, random) Hugging Face causal LM with a frozen base."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from qphi.errors import QPhiError
from qphi.models import PHiModel
from qphi.phi import PHiConfig, PHiOutput

from .conftest import make_llama

VOCAB = 64


def spliced(base, layer: int = 1, bottleneck: str = "continuous", freeze: bool = True) -> PHiModel:
    width = base.config.hidden_size
    config = PHiConfig(d_model=width, bottleneck=bottleneck, prior={"n_heads": 4}, loss={"self_critic": 0.0})
    return PHiModel(base, config, layer, freeze_base=freeze)


def pass_through(model: PHiModel, monkeypatch) -> list[torch.Tensor]:
    """Make the PHi layer hand on its input unchanged; returns the list of inputs it saw."""
    seen = []
    original = type(model.phi).forward

    def forward(self, h, **kwargs) -> PHiOutput:
        seen.append(h)
        out = original(self, h, **kwargs)
        out.h = h
        return out

    monkeypatch.setattr(type(model.phi), "forward", forward)
    return seen


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_identity_layer_leaves_the_output_unchanged(layer, monkeypatch):
    base = make_llama(VOCAB)
    ids = torch.randint(0, VOCAB, (2, 12))
    with torch.no_grad():
        reference = base(input_ids=ids, use_cache=False, output_hidden_states=True)
        model = spliced(base, layer).eval()
        changed = model(ids).logits
        seen = pass_through(model, monkeypatch)
        same = model(ids).logits
    torch.testing.assert_close(same, reference.logits, rtol=0, atol=0)
    assert not torch.allclose(changed, reference.logits, atol=1e-3), "the layer must sit on the main pathway"
    # "after block L": the layer sees the residual stream after block L (hidden_states[0] is the
    # embedding; HF reports the last block's output after the final norm)
    after = base.model.norm(seen[0]) if layer == base.config.num_hidden_layers - 1 else seen[0]
    torch.testing.assert_close(after, reference.hidden_states[layer + 1], rtol=0, atol=0)


def test_generation_bypasses_the_layer():
    base = make_llama(VOCAB)
    ids = torch.randint(3, VOCAB, (1, 5))
    expected = base.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    model = spliced(base)
    got = model.base.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(got, expected)


def test_frozen_base_gets_no_gradient_and_stays_bit_identical():
    base = make_llama(VOCAB)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = spliced(base).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    phi_before = {k: v.clone() for k, v in model.phi.state_dict().items()}
    for _ in range(3):
        out = model(torch.randint(0, VOCAB, (2, 16)))
        out.loss.backward()
        assert all(p.grad is None for p in base.parameters())
        optimizer.step()
        optimizer.zero_grad()
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert any(not torch.equal(phi_before[k], v) for k, v in model.phi.state_dict().items())
    assert set(model.trainable_state_dict()) == {f"phi.{k}" for k in model.phi.state_dict()}


def test_no_graph_below_and_next_token_loss_reaches_the_layer_through_the_frozen_top(monkeypatch):
    model = spliced(make_llama(VOCAB), layer=1).train()
    seen = []
    original = type(model.phi).forward

    def spy(self, h, **kwargs):
        seen.append(h)
        return original(self, h, **kwargs)

    monkeypatch.setattr(type(model.phi), "forward", spy)
    out = model(torch.randint(0, VOCAB, (2, 10)))
    assert not seen[0].requires_grad and seen[0].grad_fn is None
    out.nll_mean.backward()  # the next-token loss alone
    assert model.phi.bottleneck.decode.weight.grad is not None
    assert model.phi.bottleneck.decode.weight.grad.abs().sum() > 0
    assert model.phi.bottleneck.encode.weight.grad.abs().sum() > 0


def test_unfrozen_bottom_does_build_a_graph(monkeypatch):
    """The counterpart of the test above: without freezing, the hidden states do carry a graph."""
    model = spliced(make_llama(VOCAB), freeze=False).train()
    seen = pass_through(model, monkeypatch)
    model(torch.randint(0, VOCAB, (1, 6)))
    assert seen[0].requires_grad


def test_the_layer_trains():
    """The objective falls over a few steps (mostly its PHi term, the random top part being indifferent)."""
    torch.manual_seed(0)
    model = spliced(make_llama(VOCAB), layer=1).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    ids = torch.randint(0, VOCAB, (4, 24))
    nll, phi = [], []
    for _ in range(25):
        out = model(ids)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        nll.append(float(out.nll_mean.detach()))
        phi.append(float(out.phi.loss.detach()))
    assert phi[-1] < 0.5 * phi[0]
    # a random base predicts about uniformly whatever it sees: the layer must not make that worse
    assert sum(nll[-5:]) / 5 <= sum(nll[:5]) / 5 + 0.01


def test_identity_init_preserves_the_frozen_model_exactly():
    base = make_llama(VOCAB)
    ids = torch.randint(0, VOCAB, (2, 12))
    with torch.no_grad():
        reference = base(input_ids=ids, use_cache=False).logits
        model = spliced(base).eval()
        model.phi.bottleneck.start_as_identity()
        torch.testing.assert_close(model(ids).logits, reference, rtol=1e-5, atol=1e-5)
    narrow = PHiConfig(d_model=model.phi.config.d_model, bottleneck="continuous", latent_dim=8, prior={"n_heads": 4})
    with pytest.raises(QPhiError, match="latent_dim = the model width"):
        PHiModel(make_llama(VOCAB), narrow, 1).phi.bottleneck.start_as_identity()


def test_packed_documents_are_scored_as_if_alone():
    """Positions restarting per document keep a Llama's attention, and document ids keep the
    prior, inside each document: a packed row gives each document's own logits and PHi."""
    model = spliced(make_llama(VOCAB)).eval()
    a, b = torch.randint(0, VOCAB, (1, 9)), torch.randint(0, VOCAB, (1, 6))
    ids = torch.cat([a, b], 1)
    positions = torch.cat([torch.arange(9), torch.arange(6)])[None]
    documents = torch.cat([torch.zeros(9), torch.ones(6)]).long()[None]
    with torch.no_grad():
        packed = model(ids, positions=positions, document_ids=documents)
        alone = [model(x) for x in (a, b)]
    torch.testing.assert_close(packed.logits[:, :9], alone[0].logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(packed.logits[:, 9:], alone[1].logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(packed.phi.phi[:, 9:], alone[1].phi.phi, rtol=1e-4, atol=1e-3)


def test_gpt2_block_list(monkeypatch):
    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4, n_positions=64)).eval()
    ids = torch.randint(0, VOCAB, (2, 10))
    with torch.no_grad():
        reference = base(input_ids=ids, use_cache=False).logits
        model = spliced(base, layer=1)
        pass_through(model, monkeypatch)
        torch.testing.assert_close(model(ids).logits, reference, rtol=0, atol=0)


def test_layer_index_outside_the_model_is_a_user_error():
    with pytest.raises(QPhiError, match=r"0\.\.3"):
        spliced(make_llama(VOCAB, layers=4), layer=4)
