"""Metric records of a run: `metrics.jsonl` always, TensorBoard and W&B when asked."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from qphi.io import append_jsonl


class MetricsLogger:
    """Writes one JSON line per record (rank 0 only); mirrors scalars to TensorBoard/W&B."""

    def __init__(
        self, run_dir: Path, enabled: bool, tensorboard: bool, wandb: bool, config: dict[str, Any], start: int = 0
    ):
        """`start`: the step a run (re)starts from; TensorBoard hides the events that an earlier
        attempt in the same directory wrote after it."""
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start + 1)
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError:
                from qphi.errors import QPhiError

                raise QPhiError("train.wandb=true needs the wandb package: pip install 'qphi[wandb]'") from None
            self.wandb = wandb_module.init(project="qphi", name=run_dir.name, config=config, dir=str(run_dir))

    def log(self, step: int, kind: str, values: dict[str, Any] | Any) -> None:
        """`values`: a mapping or a dataclass of numbers (e.g. a level's evaluation)."""
        if not self.enabled:
            return
        if is_dataclass(values):
            values = asdict(values)
        append_jsonl(self.path, {"step": step, "kind": kind, **values})
        scalars = {f"{kind}/{k}": v for k, v in values.items() if isinstance(v, int | float)}
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
