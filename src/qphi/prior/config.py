"""Configuration of the learned autoregressive prior."""

from __future__ import annotations

from pydantic import Field

from qphi.configuration import Config


class PriorConfig(Config):
    """The learned autoregressive prior: one causal self-attention block + RMSNorm + SwiGLU head."""

    width: int | None = Field(None, ge=8, description="model width of the prior; None = the host's d_model")
    n_heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(8 / 3, gt=0)
    rope_base: float = Field(10_000.0, gt=0)
