"""Residual quantization (RQ): Q Gumbel or VQ stages, stage s quantizing what stages < s left over.

The prior predicts the stages coarse to fine: p(c_t⁽¹···Q⁾ | c_<t) = Π_s p(c_t⁽ˢ⁾ | c_<t, c_t⁽<ˢ⁾).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator
from typing_extensions import Self

from qphi.bottlenecks.base import DiscreteConfig
from qphi.bottlenecks.codebook import CodebookConfig, CodebookStack
from qphi.bottlenecks.gumbel import GumbelOptions, GumbelStage
from qphi.bottlenecks.registry import register
from qphi.bottlenecks.vq import VQ_TAU_END, VQ_TAU_START, VQOptions, VQStage


@register
class ResidualConfig(CodebookConfig, GumbelOptions):
    name: Literal["residual"] = "residual"
    title: ClassVar[str] = "RQ"
    table_order: ClassVar[int] = 3
    depth_axis: ClassVar[bool] = True
    num_stages: int = Field(2, ge=1, description="Q, quantization stages")
    residual_quantizer: Literal["gumbel", "vq"] = Field("gumbel", description="the kind of every stage")
    vq: VQOptions = VQOptions()

    @model_validator(mode="before")
    @classmethod
    def _temperatures_of_the_stage_kind(cls, data: Any) -> Any:
        """VQ stages default to VQ's temperatures (see `VQ_TAU_START`)."""
        if isinstance(data, dict) and data.get("residual_quantizer") == "vq":
            return {"tau_start": VQ_TAU_START, "tau_end": VQ_TAU_END, **data}
        return data

    @model_validator(mode="after")
    def _options_of_the_stage_kind(self) -> ResidualConfig:
        """Options of the other stage kind would be silently ignored: refuse them (unless left at
        their defaults, as in a saved config)."""
        gumbel_only = set(GumbelOptions.model_fields) - set(DiscreteConfig.model_fields)
        other = {"vq"} if self.residual_quantizer == "gumbel" else gumbel_only
        given = sorted(
            k for k in other if getattr(self, k) != type(self).model_fields[k].get_default(call_default_factory=True)
        )
        if given:
            raise ValueError(
                f"{', '.join(given)}: not an option of {self.residual_quantizer} stages "
                f"(residual_quantizer={self.residual_quantizer}): remove it, or choose the other residual_quantizer"
            )
        return self

    def depth(self) -> int:
        return self.num_stages

    def sized(self, size: int, stages: int | None = None) -> Self:
        return self.replace(codebook_size=size, num_stages=stages or self.num_stages)

    def build(self, d_model: int) -> CodebookStack:
        code_dim = self.latent(d_model).code_dim
        if self.residual_quantizer == "gumbel":
            stages = [GumbelStage(code_dim, self.codebook_size, self) for _ in range(self.num_stages)]
        else:
            stages = [VQStage(code_dim, self.codebook_size, self.vq) for _ in range(self.num_stages)]
        kl_rate = self.residual_quantizer == "gumbel" and self.rate == "kl"
        return CodebookStack(self, d_model, code_dim, stages, kl_rate=kl_rate)
