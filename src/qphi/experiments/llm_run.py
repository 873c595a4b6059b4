"""Shared by the LLM experiments: a trained run of a pretrained model, with its tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qphi.errors import QPhiError
from qphi.models import PHiModel
from qphi.models.pretrained import HubModel, load_tokenizer, resolve_spec, same_model
from qphi.training import RunConfig, load_run
from qphi.training.run_dir import saved_config


def load_llm_run(run_dir: Path, model: str | None = None, device: str = "cpu") -> tuple[RunConfig, PHiModel, Any, int]:
    """The run's config, its PHi-augmented model (latest checkpoint), the tokenizer and the step.

    `model`, when given, must name the run's own base model: a PHi layer trained inside one
    model means nothing inside another. Where the saved spec no longer resolves (a moved folder),
    or reads as a hub ID without its commit — which qphi records only for relative paths written
    by older versions — `model` is taken at its word.
    """
    config = saved_config(run_dir)
    if config.model.architecture != "pretrained":
        raise QPhiError(
            f"'{run_dir}' trained a {config.model.architecture} from scratch, not a PHi layer inside a pretrained LLM: "
            "use qphi eval for it"
        )
    base = config.model.pretrained
    if model is not None:
        resolve_spec(model)
        try:
            saved = resolve_spec(base)
        except QPhiError:
            saved = None
        if saved is None or (isinstance(saved, HubModel) and saved.revision is None):
            base = model
        if not same_model(model, base):
            raise QPhiError(
                f"--model '{model}' is not the base model of '{run_dir}' ({config.model.pretrained}): "
                "omit --model, or pass a run trained inside that model"
            )
    config, phi_model, step = load_run(run_dir, device, pretrained=base)
    return config, phi_model, load_tokenizer(config.model.pretrained), step
