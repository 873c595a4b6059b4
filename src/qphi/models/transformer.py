"""The specialised from-scratch transformer: a small `transformers` Llama (RMSNorm, rotary
embeddings, SwiGLU, tied embeddings) over the 128-id character vocabulary.

Using the library's Llama rather than a hand-written copy means the from-scratch model and
pretrained LLMs share one code path (and one splice), and inherit its fused attention.
"""

from __future__ import annotations

from transformers import LlamaConfig, LlamaForCausalLM

from qphi.models.config import ModelConfig


def build_transformer(config: ModelConfig) -> LlamaForCausalLM:
    llama = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.swiglu_hidden,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=config.max_length,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(llama)
