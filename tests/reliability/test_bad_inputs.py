"""A catalogue of user mistakes, each driven through the real `qphi` entry point.

Every case must end with a non-zero exit status, no traceback, and a last stderr line of the
form `qphi COMMAND: error: PROBLEM: FIX` that names both; every file that existed before in
the inputs, the output folder and the run directories must be byte-identical afterwards, and
no file may have been created.

A text longer than the model's context is refused (not scored in windows): windows would
give the tokens after a cut a shorter past than the rest, so their PHi would mean something
else. `--max-tokens` scores the first tokens of such a text instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from training.runs import tiny_config, tiny_overrides

from qphi.bottlenecks.registry import discrete_names
from qphi.cli.main import main
from qphi.training import train

TINY = tiny_overrides("train.steps=4", "train.checkpoint_every=2")
ERROR_LINE = re.compile(r"qphi (?P<command>[\w-]+): error: (?P<problem>.+?): (?P<fix>.+)")


@dataclass
class Inputs:
    """What a case may use: shared runs (never changed) and a fresh folder `tmp` of its own."""

    tmp: Path
    run: Path  # a trained from-scratch run with checkpoints at steps 2 and 4
    llm_run: Path  # a PHi layer trained inside a tiny Llama
    llm_model: Path  # that Llama's checkpoint directory
    data: Path  # the LLM runs' data folder
    monkeypatch: pytest.MonkeyPatch
    later: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # closed after the case

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def copy_run(self, name: str = "run") -> Path:
        return Path(shutil.copytree(self.run, self.tmp / name))

    def latest(self, run: Path) -> Path:
        return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()

    def edit_state(self, run: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
        """A copy of the run whose latest state.json is `change(state)` (or `state`, changed in place)."""
        path = self.latest(run) / "state.json"
        state = json.loads(path.read_text())
        edited = change(state)
        path.write_text(json.dumps(state if edited is None else edited))
        return run

    def edit_tensors(self, run: Path, name: str, change: Callable[[dict[str, torch.Tensor]], None]) -> Path:
        """Change a tensor file of the latest checkpoint and record its new hash, as a careful
        forger (or a script that 'fixes' a checkpoint) would."""
        folder = self.latest(run)
        tensors = load_file(folder / name)
        change(tensors)
        save_file(tensors, folder / name)
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        return self.edit_state(run, lambda state: state["files"].update({name: digest}))


Setup = Callable[[Inputs], list[str]]
CASES: dict[str, tuple[Setup, str, str]] = {}


def case(problem: str, fix: str) -> Callable[[Setup], Setup]:
    """Register a case: `setup` builds its inputs and returns the argv; `problem` and `fix` are
    parts of the error line, the fix after the problem."""

    def register(setup: Setup) -> Setup:
        CASES[setup.__name__] = (setup, problem, fix)
        return setup

    return register


def permissions_hold(i: Inputs) -> None:
    """Skip where file modes do not bind this process (root, or CAP_DAC_OVERRIDE)."""
    probe = i.tmp / ".probe"
    probe.mkdir(mode=0o555)
    try:
        (probe / "file").touch()
    except PermissionError:
        return
    finally:
        (probe / "file").unlink(missing_ok=True)
        probe.rmdir()
    pytest.skip(f"running as uid {os.geteuid()}, which may write into read-only folders and read unreadable files")


def without_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")


def quick_train(i: Inputs, *overrides: str) -> list[str]:
    """`qphi train cpu-quick OVERRIDES --out <tmp>/out`."""
    return ["train", "cpu-quick", *overrides, "--out", str(i.tmp / "out")]


def pretrained(i: Inputs, model: str | Path, *overrides: str) -> list[str]:
    return quick_train(
        i, *TINY, "model.architecture=pretrained", "data.source=mixture", f"model.pretrained={model}",
        "model.phi_after=1", "phi.prior.n_heads=4", *overrides,
    )  # fmt: skip


# ------------------------------------------------------------------ configs


@case("config file", "is not valid YAML at line 2, column 1: expected ',' or '}'")
def malformed_yaml(i: Inputs) -> list[str]:
    return ["train", str(i.file("bad.yaml", "model: {d_model: 32\n")), "--out", str(i.tmp / "out")]


@case("holds a list, not a mapping of keys to values", "write it as `section: {key: value}` lines")
def yaml_that_is_not_a_mapping(i: Inputs) -> list[str]:
    return ["train", str(i.file("list.yaml", "- model\n- phi\n")), "--out", str(i.tmp / "out")]


@case("is not UTF-8 text", "save it as UTF-8")
def config_that_is_not_utf8(i: Inputs) -> list[str]:
    return ["train", str(i.file("latin1.yaml", "name: caf\xe9\n".encode("latin-1"))), "--out", str(i.tmp / "out")]


@case("'cpu-quik' is neither a YAML file nor a preset", "(did you mean 'cpu-quick'?)")
def misspelt_preset(i: Inputs) -> list[str]:
    return ["train", "cpu-quik", "--out", str(i.tmp / "out")]


@case("unknown key 'train.stepz'", "(did you mean 'steps'?)")
def unknown_key_gets_the_closest_suggested(i: Inputs) -> list[str]:
    return quick_train(i, "train.stepz=3")


@case("unknown key 'train.zzz'", "(valid keys there: steps, batch_size, grad_accum")
def unknown_key_without_a_close_one_lists_the_keys(i: Inputs) -> list[str]:
    return quick_train(i, "train.zzz=3")


@case("override 'steps' is not of the form key=value", "write it as section.key=value")
def override_without_a_value(i: Inputs) -> list[str]:
    return quick_train(i, "steps")


@case("'train.steps'", "Input should be a valid integer, unable to parse string as an integer (got 'many')")
def wrong_type(i: Inputs) -> list[str]:
    return quick_train(i, "train.steps=many")


@case("'phi.bottleneck': unknown bottleneck 'vae'", "choose one of continuous, gumbel, vq, residual, fsq")
def unknown_bottleneck(i: Inputs) -> list[str]:
    return quick_train(i, "phi.bottleneck=vae")


@case("'phi.codebook_size'", "Input should be greater than or equal to 2 (got 1)")
def codebook_of_one_code(i: Inputs) -> list[str]:
    return quick_train(i, "phi.codebook_size=1")


@case("'optim.lr'", "Input should be greater than 0 (got -0.001)")
def negative_learning_rate(i: Inputs) -> list[str]:
    return quick_train(i, "optim.lr=-0.001")


@case("phi_after=9 is beyond the model's depth", "use 0..2 for n_layers=3")
def phi_layer_beyond_the_depth(i: Inputs) -> list[str]:
    return quick_train(i, "model.phi_after=9")


@case("PHi layer index 4 is outside the model's 4 blocks", "use 0..3")
def phi_layer_beyond_a_pretrained_models_depth(i: Inputs) -> list[str]:
    return pretrained(i, i.llm_model, "model.phi_after=4")


@case("'phi.fsq_levels'", "each >= 2 (e.g. [8, 5, 5, 5]) (got [1, 5])")
def fsq_level_below_two(i: Inputs) -> list[str]:
    return quick_train(i, "phi.bottleneck=fsq", "phi.fsq_levels=[1,5]")


@case("an LSTM cannot read packed rows", "set data.pack=false")
def packed_rows_for_an_lstm(i: Inputs) -> list[str]:
    return quick_train(i, "model.architecture=lstm", "data.pack=true")


@case("train.batch_size=4 must be divisible by processes × grad_accum = 3", "set train.batch_size to a multiple of 3")
def batch_not_divisible_into_micro_batches(i: Inputs) -> list[str]:
    return quick_train(i, *TINY, "train.grad_accum=3")


@case("train.device=cuda but no CUDA GPU is available", "use train.device=cpu or auto")
def gpu_requested_without_one(i: Inputs) -> list[str]:
    without_gpu()
    return quick_train(i, *TINY, "train.device=cuda")


@case("WORLD_SIZE=2 is set but not the rest of a torchrun environment", "start the processes with torchrun")
def world_size_without_torchrun(i: Inputs) -> list[str]:
    i.monkeypatch.setenv("WORLD_SIZE", "2")
    i.monkeypatch.setenv("RANK", "0")
    i.monkeypatch.delenv("MASTER_ADDR", raising=False)
    return quick_train(i, *TINY)


# ------------------------------------------------------------------ data and models


@case("not found at", "download it with `qphi data fetch math`")
def missing_data_path(i: Inputs) -> list[str]:
    return pretrained(
        i, i.llm_model, f"data.mixture.math_path={i.tmp / 'no-math'}", f"data.mixture.gsm8k_path={i.data / 'gsm8k'}"
    )


@case(
    "model '",
    "not found: pass 'smollm2', a Hugging Face hub ID (org/name[@revision]), a checkpoint directory or a .gguf file",
)
def missing_model_path(i: Inputs) -> list[str]:
    return pretrained(i, i.tmp / "no-such-model")


@case(
    "missing.gguf' not found",
    "pass 'smollm2', a Hugging Face hub ID (org/name[@revision]), a checkpoint directory or a .gguf file",
)
def missing_gguf(i: Inputs) -> list[str]:
    return pretrained(i, i.tmp / "missing.gguf")


@case("cannot be read as a GGUF model", "pass an intact .gguf file")
def damaged_gguf(i: Inputs) -> list[str]:
    i.monkeypatch.setenv("QPHI_CACHE", str(i.tmp / "cache"))
    return pretrained(i, i.file("model.gguf", b"GGUF\x03\x00\x00\x00"))


@case("has no safetensors weights (pickled .bin weights are never loaded)", "convert it with save_pretrained")
def pickled_model_weights(i: Inputs) -> list[str]:
    folder = i.tmp / "pickled-model"
    folder.mkdir()
    shutil.copy(i.llm_model / "config.json", folder)
    i.file("pickled-model/pytorch_model.bin", b"\x80\x04not really a pickle")
    return pretrained(i, folder)


def model_folder(i: Inputs, name: str, **config: object) -> Path:
    """A copy of the tiny Llama's folder with keys of config.json replaced."""
    folder = Path(shutil.copytree(i.llm_model, i.tmp / name))
    original = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**original, **config}))
    return folder


@case("asks to run Python code shipped with the model (auto_map), which qphi never does", "use a checkpoint of an")
def model_folder_with_its_own_code(i: Inputs) -> list[str]:
    auto_map = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    folder = model_folder(i, "custom-code", model_type="evilnet", auto_map=auto_map)
    # run, it would create a file, which the catalogue's rule then catches
    (folder / "evil.py").write_text(f"open({str(i.tmp / 'code-ran')!r}, 'w').close()\n")
    return pretrained(i, folder)


@case("cannot be loaded by transformers (The checkpoint you are trying to load has model type `unknownnet`", "use a")
def model_folder_of_an_unknown_architecture(i: Inputs) -> list[str]:
    return pretrained(i, model_folder(i, "unknown", model_type="unknownnet"))


# ------------------------------------------------------------------ run directories


@case("already holds a trained run", "pass resume=true to continue it, or choose another output directory")
def new_run_into_a_trained_directory(i: Inputs) -> list[str]:
    return ["train", "cpu-quick", *TINY, "phi.bottleneck=vq", "--out", str(i.run)]


@case("holds a run with a different config (phi.bottleneck", "resume with the same config")
def resume_with_another_config(i: Inputs) -> list[str]:
    return ["train", "cpu-quick", *TINY, "phi.bottleneck=vq", "--out", str(i.run), "--resume"]


@case("written by 2 process(es) but this run has 1", "resume with torchrun --nproc-per-node=2")
def resume_with_another_world_size(i: Inputs) -> list[str]:
    run = i.copy_run()
    state = i.latest(run) / "state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "world_size": 2}))
    return ["train", "cpu-quick", *TINY, "--out", str(run), "--resume"]


@case("model.safetensors' is corrupted (hash mismatch)", "to continue from the newest other checkpoint (step-0000002)")
def resume_from_a_corrupted_checkpoint(i: Inputs) -> list[str]:
    run = i.copy_run()
    weights = i.latest(run) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return ["train", "cpu-quick", *TINY, "--out", str(run), "--resume"]


@case("model.safetensors' is corrupted (hash mismatch)", "to continue from the newest other checkpoint (step-0000002)")
def evaluate_a_truncated_checkpoint(i: Inputs) -> list[str]:
    run = i.copy_run()
    weights = i.latest(run) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return ["eval", str(run)]


def with_bottleneck(i: Inputs, bottleneck: str) -> Path:
    """A copy of the run whose config names another bottleneck than its checkpoints hold."""
    run = i.copy_run()
    config = tiny_config("train.steps=4", "train.checkpoint_every=2", f"phi.bottleneck={bottleneck}")
    (run / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return run


WIRED_FOR_GUMBEL = (
    "was trained with phi.bottleneck.name='gumbel', not 'vq' as the config says",
    "set phi.bottleneck.name back to 'gumbel' in config.yaml",
)


@case(*WIRED_FOR_GUMBEL)
def evaluate_a_checkpoint_of_another_bottleneck(i: Inputs) -> list[str]:
    return ["eval", str(with_bottleneck(i, "vq"))]


@case(*WIRED_FOR_GUMBEL)
def resume_a_checkpoint_of_another_bottleneck(i: Inputs) -> list[str]:
    return ["train", "cpu-quick", *TINY, "phi.bottleneck=vq", "--out", str(with_bottleneck(i, "vq")), "--resume"]


def unwired(state: dict[str, Any]) -> None:
    """A checkpoint of format 1, which did not record the model's wiring."""
    state.update(format=1)
    del state["wiring"]


@case("was made for a different model or bottleneck (missing:", "use the config it was trained with")
def evaluate_a_format_1_checkpoint_of_another_bottleneck(i: Inputs) -> list[str]:
    return ["eval", str(i.edit_state(with_bottleneck(i, "vq"), unwired))]


@case("was trained with model.phi_after=0, not 1 as the config says", "set model.phi_after back to 0")
def evaluate_after_moving_the_phi_layer_in_config_yaml(i: Inputs) -> list[str]:
    run = i.copy_run()  # two blocks: the layer after block 1 has the same shapes as after block 0
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("phi_after: 0", "phi_after: 1"))
    return ["eval", str(run)]


@case("was trained with model.phi_after=0, not 1 as the config says", "set model.phi_after back to 0")
def resume_after_moving_the_phi_layer_in_config_yaml(i: Inputs) -> list[str]:
    run = i.copy_run()
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("phi_after: 0", "phi_after: 1"))
    return ["train", "cpu-quick", *TINY, "model.phi_after=1", "--out", str(run), "--resume"]


@case("cannot write", "choose a writable output folder")
def read_only_output_folder(i: Inputs) -> list[str]:
    permissions_hold(i)
    folder = i.tmp / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return ["train", "cpu-quick", *TINY, "--out", str(folder / "run")]


@case("cannot write", "choose a writable output folder")
def read_only_run_directory_for_eval(i: Inputs) -> list[str]:
    permissions_hold(i)
    run = i.copy_run()
    run.chmod(0o555)
    return ["eval", str(run)]


@case("taken' is a file, not a folder", "choose another output folder")
def output_folder_that_is_a_file(i: Inputs) -> list[str]:
    return ["train", "cpu-quick", *TINY, "--out", str(i.file("taken", "a file, not a folder\n"))]


@case("is not a qphi run directory (no config.yaml)", "pass the --out folder of a training run")
def evaluate_a_missing_run(i: Inputs) -> list[str]:
    return ["eval", str(i.tmp / "no-such-run")]


@case("has no checkpoint yet", "train it first (qphi train ...)")
def evaluate_a_run_without_checkpoints(i: Inputs) -> list[str]:
    run = i.tmp / "untrained"
    run.mkdir()
    shutil.copy(i.run / "config.yaml", run)
    return ["eval", str(run)]


@case("device 'cuda' was requested but no CUDA GPU is available", "use cpu")
def evaluate_on_a_missing_gpu(i: Inputs) -> list[str]:
    without_gpu()
    return ["eval", str(i.run), "--device", "cuda"]


@case("'tpu' is not a device", "use cpu, cuda or cuda:N")
def evaluate_on_an_unknown_device(i: Inputs) -> list[str]:
    return ["eval", str(i.run), "--device", "tpu"]


@case("argument --samples", "must be at least 1, got 0: pass 1 or more")
def evaluate_no_samples(i: Inputs) -> list[str]:
    return ["eval", str(i.run), "--samples", "0"]


# ------------------------------------------------------------------ experiments


@case("argument --seeds", "must be at least 1, got 0: pass 1 or more")
def reproduce_without_seeds(i: Inputs) -> list[str]:
    return ["reproduce", "--out", str(i.tmp / "out"), "--seeds", "0"]


@case("unknown bottleneck(s) vae", "choose from continuous, gumbel, vq, residual, fsq")
def reproduce_an_unknown_bottleneck(i: Inputs) -> list[str]:
    return ["reproduce", "--out", str(i.tmp / "out"), "--bottlenecks", "gumbel", "vae"]


@case("device 'cuda' was requested but no CUDA GPU is available", "use cpu")
def reproduce_on_a_missing_gpu(i: Inputs) -> list[str]:
    without_gpu()
    return ["reproduce", "--out", str(i.tmp / "out"), "--device", "cuda"]


@case("holds a training run (config.yaml), not a reproduction", "choose another --out folder")
def reproduce_into_a_training_run(i: Inputs) -> list[str]:
    return ["reproduce", "--out", str(i.run), *TINY]


@case("holds a reproduction of {'preset': 'cpu-quick', 'overrides': []}", "use another --out")
def reproduce_into_another_reproduction(i: Inputs) -> list[str]:
    out = i.tmp / "out"
    i.file("out/reproduce.json", json.dumps({"preset": "cpu-quick", "overrides": []}))
    return ["reproduce", "--out", str(out), "train.steps=5"]


@case("reproduce.json' is not valid JSON", "delete it so that it is written again")
def reproduce_into_a_folder_with_a_torn_marker(i: Inputs) -> list[str]:
    i.file("out/reproduce.json", '{"preset": "cpu-qu')
    return ["reproduce", "--out", str(i.tmp / "out"), *TINY]


@case("override 'train.stpes=3': unknown key 'train.stpes'", "did you mean 'steps'?")
def reproduce_with_a_misspelt_override(i: Inputs) -> list[str]:
    return ["reproduce", "--out", str(i.tmp / "out"), "--bottlenecks", "vq", "train.stpes=3"]


@case("the reproduction sets train.seed itself", "use --bottlenecks, --seeds and --device instead")
def reproduce_with_a_seed_override(i: Inputs) -> list[str]:
    return ["reproduce", "--out", str(i.tmp / "out"), "train.seed=3"]


@case("argument --jobs: must be at least 1, got 0", "pass 1 or more")
def reproduce_without_jobs(i: Inputs) -> list[str]:
    return ["reproduce", "--out", str(i.tmp / "out"), "--jobs", "0"]


@case("argument --analyse-only: not allowed with argument --plan", "--plan")
def reproduce_plan_and_analyse_at_once(i: Inputs) -> list[str]:
    return ["reproduce", "--out", str(i.tmp / "out"), "--plan", "--analyse-only"]


@case("1 of 2 runs are not finished as planned: gumbel-seed1 (not started)", "run their commands from")
def reproduce_analyse_only_before_the_runs_finished(i: Inputs) -> list[str]:
    out = i.tmp / "out"
    shutil.copytree(i.run, out / "runs" / "gumbel-seed0")  # the shared run is gumbel seed 0 of these options
    return ["reproduce", "--out", str(out), "--bottlenecks", "gumbel", "--seeds", "2", "--analyse-only", *TINY]


@case("1 of 1 runs are not finished as planned: gumbel-seed0 (trained with another optim.warmup_steps)", "run their")
def reproduce_analyse_only_a_run_trained_otherwise(i: Inputs) -> list[str]:
    out = i.tmp / "out"
    shutil.copytree(i.run, out / "runs" / "gumbel-seed0")  # gumbel seed 0 of TINY, not of TINY + warmup 3
    return ["reproduce", "--out", str(out), "--bottlenecks", "gumbel", "--analyse-only", *TINY, "optim.warmup_steps=3"]


@case(
    "1 of 1 runs in", "were trained otherwise: gumbel-seed0 (trained with another optim.warmup_steps): move them away"
)
def reproduce_reusing_a_run_trained_otherwise(i: Inputs) -> list[str]:
    out = i.tmp / "out"
    shutil.copytree(i.run, out / "runs" / "gumbel-seed0")  # gumbel seed 0 of TINY, not of TINY + warmup 3
    return ["reproduce", "--out", str(out), "--bottlenecks", "gumbel", *TINY, "optim.warmup_steps=3"]


@case("holds a space, which an #SBATCH line cannot", "choose an --out without spaces")
def reproduce_plan_into_a_folder_with_a_space(i: Inputs) -> list[str]:
    return ["reproduce", "--out", str(i.tmp / "my runs"), "--plan", *TINY]


@case("argument --jobs: must be at least 1, got 0", "pass 1 or more")
def sweep_without_jobs(i: Inputs) -> list[str]:
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "vq", "--sizes", "8", "--jobs", "0"]


@case("holds a reproduction (reproduce.json), not a sweep", "choose another --out folder")
def sweep_into_a_reproduction(i: Inputs) -> list[str]:
    i.file("out/reproduce.json", json.dumps({"preset": "cpu-quick", "overrides": []}))
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "vq", "--sizes", "8"]


@case("argument --seeds", "must be at least 1, got 0: pass 1 or more")
def sweep_without_seeds(i: Inputs) -> list[str]:
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "vq", "--sizes", "8", "--seeds", "0"]


@case("--sizes must list distinct codebook sizes >= 2, got [1]", "e.g. --sizes 16 64 256")
def sweep_a_codebook_of_one_code(i: Inputs) -> list[str]:
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "vq", "--sizes", "1"]


@case("argument --bottleneck: invalid choice: 'continuous'", f"(choose from {', '.join(map(repr, discrete_names()))})")
def sweep_a_continuous_bottleneck(i: Inputs) -> list[str]:
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "continuous", "--sizes", "8"]


@case("the sweep sets phi.codebook_size itself", "use --bottleneck/--sizes/--stages/--seeds instead")
def sweep_with_a_swept_override(i: Inputs) -> list[str]:
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "vq", "--sizes", "8", "phi.codebook_size=4"]


# ------------------------------------------------------------------ the LLM commands


def score(i: Inputs, *args: str | Path) -> list[str]:
    return ["score", "--phi", str(i.llm_run), *map(str, args), "--out", str(i.tmp / "out")]


def score_a_tale(i: Inputs, *args: str | Path) -> list[str]:
    return score(i, "--text", i.file("t.txt", "Once upon a time"), *args)


@case("is empty", "give it some text to score")
def score_an_empty_text(i: Inputs) -> list[str]:
    return score(i, "--text", i.file("empty.txt", " \n"))


@case("is not UTF-8 text (byte 3)", "convert it to UTF-8")
def score_a_text_that_is_not_utf8(i: Inputs) -> list[str]:
    return score(i, "--text", i.file("latin1.txt", "caf\xe9".encode("latin-1")))


@case("cannot read", "(No such file or directory): pass a readable text file")
def score_a_missing_text(i: Inputs) -> list[str]:
    return score(i, "--text", i.tmp / "missing.txt")


@case("cannot read", "(Is a directory): pass a readable text file")
def score_a_folder_as_text(i: Inputs) -> list[str]:
    return score(i, "--text", i.tmp)


@case("cannot read", "(Permission denied): pass a readable text file")
def score_an_unreadable_text(i: Inputs) -> list[str]:
    permissions_hold(i)
    text = i.file("secret.txt", "some text")
    text.chmod(0)
    return score(i, "--text", text)


@case("more than the model's context of 256", "score only its first tokens with max_tokens (--max-tokens)")
def score_a_text_longer_than_the_context(i: Inputs) -> list[str]:
    return score(i, "--text", i.file("long.txt", "Once upon a time " * 200))


@case("line 2 is not valid JSON", "fix or remove that line")
def score_a_broken_jsonl_line(i: Inputs) -> list[str]:
    return score(i, "--jsonl", i.file("in.jsonl", '{"text": "fine"}\n{"text": \n{"text": "fine"}\n'))


@case("line 1 has neither a 'text' string nor 'user' and 'assistant' strings", "give it one of them")
def score_a_jsonl_record_without_text(i: Inputs) -> list[str]:
    return score(i, "--jsonl", i.file("in.jsonl", '{"prompt": "no text key"}\n'))


@case("is not the base model of", "omit --model, or pass a run trained inside that model")
def score_with_another_base_model(i: Inputs) -> list[str]:
    (i.tmp / "other-model").mkdir()
    return score_a_tale(i, "--model", i.tmp / "other-model")


@case("not found: pass 'smollm2'", "a checkpoint directory or a .gguf file")
def score_with_a_missing_model(i: Inputs) -> list[str]:
    return score_a_tale(i, "--model", i.tmp / "no-such-model")


@case("cannot write", "choose a writable output folder")
def score_into_a_read_only_folder(i: Inputs) -> list[str]:
    permissions_hold(i)
    (i.tmp / "out").mkdir()
    (i.tmp / "out").chmod(0o555)
    return score(i, "--text", i.file("t.txt", "Once upon a time"))


@case("trained a transformer from scratch, not a PHi layer inside a pretrained LLM", "use qphi eval for it")
def score_with_a_from_scratch_run(i: Inputs) -> list[str]:
    return ["score", "--phi", str(i.run), "--text", str(i.file("t.txt", "hello")), "--out", str(i.tmp / "out")]


@case(
    "natural-language levels not found at",
    "the path of a folder of {level, user, assistant} JSON files (the command's --data option",
)
def nl_levels_from_a_missing_folder(i: Inputs) -> list[str]:
    return ["nl-levels", str(i.llm_run), "--data", str(i.tmp / "no-levels"), "--out", str(i.tmp / "out")]


@case("is not a qphi run directory (no config.yaml)", "pass the --out folder of a training run")
def nl_levels_of_a_missing_run(i: Inputs) -> list[str]:
    return ["nl-levels", str(i.tmp / "no-such-run"), "--out", str(i.tmp / "out")]


@case("--samples-per-question must be at least 2 to compare rationales of a question", "pass 2 or more")
def correctness_with_one_sample(i: Inputs) -> list[str]:
    return ["correctness", str(i.llm_run), "--dataset", "math", "--samples-per-question", "1"]


@case("MATH test split not found at", "or give the path of a folder holding test.jsonl")
def correctness_on_a_missing_dataset(i: Inputs) -> list[str]:
    return ["correctness", str(i.llm_run), "--dataset", "math", "--data", str(i.tmp / "no-math")]


# ------------------------------------------------------------------ bounded YAML, structural mistakes


def config_file(i: Inputs, text: str, overrides: tuple[str, ...] = tuple(TINY)) -> list[str]:
    """`qphi train FILE OVERRIDES` of a YAML text."""
    return ["train", str(i.file("config.yaml", text)), *overrides, "--out", str(i.tmp / "out")]


@case("holds an alias (*a0) at line 4, column", "write the value out in full (aliases are not read)")
def yaml_alias_bomb(i: Inputs) -> list[str]:
    # nine levels of ten aliases: 10^9 list items once expanded
    levels = ["a0: &a0 [0, 1]"] + [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 10)]
    return config_file(i, "data:\n  levels:\n" + "".join(f"    - {line}\n" for line in levels))


@case("holds key 'train' twice (lines 1 and 3)", "keep one of them (a second one would replace the first)")
def repeated_top_level_key(i: Inputs) -> list[str]:
    return config_file(i, "train: {steps: 3}\nname: twice\ntrain: {steps: 1000}\n")


@case("holds key 'steps' twice (lines 2 and 3)", "keep one of them")
def repeated_nested_key(i: Inputs) -> list[str]:
    return config_file(i, "train:\n  steps: 3\n  steps: 1000\n")


@case("is not valid YAML", "nested too deeply; fix the syntax there")
def yaml_nested_too_deeply(i: Inputs) -> list[str]:
    return config_file(i, "name: " + "[" * 5000 + "]" * 5000 + "\n")


@case("config '", "is a folder, not a YAML file: pass the YAML file inside it")
def config_that_is_a_folder(i: Inputs) -> list[str]:
    (i.tmp / "experiment").mkdir()
    return ["train", str(i.tmp / "experiment"), "--out", str(i.tmp / "out")]


@case("'phi' must be a section of keys, not 'vq'", "(write phi: {key: value})")
def phi_given_a_value(i: Inputs) -> list[str]:
    return config_file(i, "phi: vq\n", overrides=())


@case("'model' must be a section of keys, not 'transformer'", "(write model: {key: value})")
def model_given_a_value(i: Inputs) -> list[str]:
    return config_file(i, "model: transformer\n", overrides=())


@case("'bottleneck_defaults' must be a section of keys, not [1, 2]", "write it as bottleneck_defaults: {key: value}")
def bottleneck_defaults_given_a_list(i: Inputs) -> list[str]:
    return config_file(i, "bottleneck_defaults: [1, 2]\n")


@case("'gumbel' must be a section of keys, not 5", "write it as gumbel: {key: value}")
def bottleneck_defaults_entry_given_a_value(i: Inputs) -> list[str]:
    return config_file(i, "phi: {bottleneck: gumbel}\nbottleneck_defaults: {gumbel: 5}\n")


@case("'data.levels' must be a list, not 3", "(write data.levels: [a, b])")
def levels_given_a_number(i: Inputs) -> list[str]:
    return quick_train(i, "data.levels=3")


@case("'phi.bottleneck' is a value ('vq'), not a section of keys", "override 'phi.bottleneck' itself")
def override_below_a_value(i: Inputs) -> list[str]:
    return quick_train(i, "phi.bottleneck=vq", "phi.bottleneck.codebook_size=8")


@case("'optim.betas.0': Input should be less than 1 (got 2)", "'optim.betas.1': Input should be less than 1 (got 3)")
def adam_betas_outside_zero_one(i: Inputs) -> list[str]:
    return quick_train(i, "optim.betas=[2,3]")


@case("override 'train.steps=true'", "'train': steps must be a number, not true")
def steps_given_a_truth_value(i: Inputs) -> list[str]:
    return quick_train(i, "train.steps=true")  # pydantic alone reads it as 1


@case("argument --sizes", "expected integers, got ²")
def sweep_a_size_in_superscript(i: Inputs) -> list[str]:
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "vq", "--sizes", "²"]


@case("'optim.lr': Input should be a finite number", "(got inf)")
def infinite_learning_rate(i: Inputs) -> list[str]:
    return quick_train(i, "optim.lr=.inf")


@case("'train.seed': Input should be less than 9223372036854775808", "(got 100000000000000000000000)")
def seed_beyond_64_bits(i: Inputs) -> list[str]:
    return quick_train(i, "train.seed=100000000000000000000000")


@case("'train.seed': Input should be greater than or equal to 0", "(got -1)")
def negative_seed(i: Inputs) -> list[str]:
    return quick_train(i, "train.seed=-1")


@case("'eval.seed': Input should be greater than or equal to 0", "(got -5)")
def negative_evaluation_seed(i: Inputs) -> list[str]:
    return quick_train(i, "eval.seed=-5")


@case("model.vocab_size=4 is below the 128 ids of the character tokenizer", "set model.vocab_size=128 or more")
def vocabulary_smaller_than_the_tokenizer(i: Inputs) -> list[str]:
    return quick_train(i, "model.vocab_size=4")


@case("'name': must be 1 to 100 characters without / or \\", "(it names the run's folder)")
def run_name_of_300_characters(i: Inputs) -> list[str]:
    return ["train", "cpu-quick", *TINY, "name=" + "n" * 300]


@case("'name': must be 1 to 100 characters without / or \\", "(it names the run's folder)")
def run_name_with_a_slash(i: Inputs) -> list[str]:
    return quick_train(i, "name=../../elsewhere")


@case("'eval.levels': must list distinct levels among [0, 1, 2, 3, 4, 5]", "at least one (e.g. [0, 1, 3, 4])")
def evaluation_level_that_does_not_exist(i: Inputs) -> list[str]:
    return quick_train(i, *TINY, "eval.levels=[7]")


@case("'eval.levels': must list distinct levels among [0, 1, 2, 3, 4, 5]", "at least one (e.g. [0, 1, 3, 4])")
def no_evaluation_levels(i: Inputs) -> list[str]:
    return quick_train(i, *TINY, "eval.levels=[]")


@case("WORLD_SIZE='0' is not a whole number 1 or more", "unset WORLD_SIZE, or start the processes with torchrun")
def world_size_zero(i: Inputs) -> list[str]:
    i.monkeypatch.setenv("WORLD_SIZE", "0")
    return quick_train(i, *TINY)


@case("WORLD_SIZE='two' is not a whole number 1 or more", "unset WORLD_SIZE, or start the processes with torchrun")
def world_size_in_words(i: Inputs) -> list[str]:
    i.monkeypatch.setenv("WORLD_SIZE", "two")
    return quick_train(i, *TINY)


@case("RANK='3' is not a whole number from 0 to 1", "unset RANK, or start the processes with torchrun")
def rank_beyond_the_world_size(i: Inputs) -> list[str]:
    i.monkeypatch.setenv("WORLD_SIZE", "2")
    i.monkeypatch.setenv("RANK", "3")
    return quick_train(i, *TINY)


# ------------------------------------------------------------------ run folders and their writers


@case("cannot write", "(File name too long): choose a shorter output folder")
def output_folder_name_too_long(i: Inputs) -> list[str]:
    return [*quick_train(i, *TINY)[:-1], str(i.tmp / ("x" * 300) / "run")]


@case("is too long (File name too long)", "use shorter names")
def config_path_too_long(i: Inputs) -> list[str]:
    return ["train", str(i.tmp / ("x" * 300) / "config.yaml"), "--out", str(i.tmp / "out")]


@case("is too long (File name too long)", "use shorter names")
def config_file_with_an_output_folder_name_too_long(i: Inputs) -> list[str]:
    return ["train", str(i.file("config.yaml", "train: {steps: 2}\n")), "--out", str(i.tmp / ("x" * 300) / "run")]


@case("is the run directory's own config.yaml, which training replaces with the resolved config", "pass a copy")
def config_that_is_the_output_folders_config_yaml(i: Inputs) -> list[str]:
    config = i.file("exp/config.yaml", "# my experiment: a short run\ntrain: {steps: 2}\n")
    return ["train", str(config), *TINY, "--out", str(i.tmp / "exp")]


def hold_lock(i: Inputs, run: Path) -> int:
    """Lock `run` as a training process would (here, from this process: the lock belongs to an
    open file, so this process's own `qphi` call is refused like any other)."""
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    i.later.callback(os.close, fd)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()} {os.uname().nodename}\n".encode())
    return os.getpid()


@case("is being written by another qphi process (PID", "wait for it to finish or stop it (kill")
def second_writer_of_a_run(i: Inputs) -> list[str]:
    run = i.copy_run()
    hold_lock(i, run)
    return ["train", "cpu-quick", *TINY, "train.steps=6", "--out", str(run), "--resume"]


@case("is being written by another qphi process (PID", "wait for it to finish or stop it (kill")
def evaluate_a_run_being_written(i: Inputs) -> list[str]:
    run = i.copy_run()
    hold_lock(i, run)
    return ["eval", str(run)]


@case("eval.json' is a folder, where the run writes a file", "remove or rename it")
def train_with_a_folder_where_eval_json_goes(i: Inputs) -> list[str]:
    (i.tmp / "out" / "eval.json").mkdir(parents=True)
    (i.tmp / "out" / "eval.json" / "keep.txt").write_text("mine")
    return quick_train(i, *TINY)


@case("eval.json': a folder of that name is in the way", "remove or rename it")
def evaluate_with_a_folder_where_eval_json_goes(i: Inputs) -> list[str]:
    run = i.copy_run()
    (run / "eval.json").unlink()
    (run / "eval.json").mkdir()
    (run / "eval.json" / "keep.txt").write_text("mine")
    return ["eval", str(run)]


def pointing(i: Inputs, content: str | bytes) -> Path:
    """A copy of the run whose `checkpoints/latest` holds `content`."""
    run = i.copy_run()
    latest = run / "checkpoints" / "latest"
    latest.write_bytes(content if isinstance(content, bytes) else content.encode())
    return run


@case("checkpoints' is a file, where the run keeps a folder", "remove or rename it")
def train_with_a_file_where_the_checkpoints_go(i: Inputs) -> list[str]:
    i.file("out/checkpoints", "my notes")
    return quick_train(i, *TINY)


@case("checkpoints/latest' is empty", "write the name of one of its checkpoints (step-0000002, step-0000004) into it")
def empty_latest_pointer(i: Inputs) -> list[str]:
    return ["eval", str(pointing(i, ""))]


@case("checkpoints/latest' cannot be read (not UTF-8 text)", "or delete it to continue from the newest")
def latest_pointer_that_is_not_utf8(i: Inputs) -> list[str]:
    return ["train", "cpu-quick", *TINY, "--out", str(pointing(i, b"step-\xff\xfe")), "--resume"]


@case("which is not a checkpoint folder of this run", "write the name of one of its checkpoints")
def latest_pointer_into_another_run(i: Inputs) -> list[str]:
    other = i.copy_run("other")
    return ["eval", str(pointing(i, f"../../{other.name}/checkpoints/step-0000004\n"))]


@case("names step-0000009, which does not exist", "or delete it to continue from the newest")
def latest_pointer_to_a_missing_checkpoint(i: Inputs) -> list[str]:
    return ["eval", str(pointing(i, "step-0000009\n"))]


@case("is of step 4, beyond train.steps=3", "set train.steps=4 or more to continue it")
def resume_with_fewer_steps_than_the_checkpoint(i: Inputs) -> list[str]:
    return ["train", "cpu-quick", *TINY, "train.steps=3", "--out", str(i.copy_run()), "--resume"]


@case("line 2 is not a JSON record", "delete that line, or the whole file (it is a log: training does not need it)")
def resume_with_a_torn_metrics_line(i: Inputs) -> list[str]:
    run = i.copy_run()
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join([lines[0], lines[1][:10] + "\n", *lines[2:]]))
    return ["train", "cpu-quick", *TINY, "train.steps=6", "--out", str(run), "--resume"]


@case("metrics.jsonl' is not UTF-8 text (byte", "delete the damaged line, or the whole file")
def resume_with_metrics_that_are_not_utf8(i: Inputs) -> list[str]:
    run = i.copy_run()
    (run / "metrics.jsonl").write_bytes(b'{"step": 1, "kind": "tr\xe9in"}\n' + (run / "metrics.jsonl").read_bytes())
    return ["train", "cpu-quick", *TINY, "train.steps=6", "--out", str(run), "--resume"]


@case("line 1 is not a metrics record (with an integer step and a kind)", "delete that line, or the whole file")
def resume_with_a_foreign_metrics_record(i: Inputs) -> list[str]:
    run = i.copy_run()
    (run / "metrics.jsonl").write_text('["not", "a", "record"]\n' + (run / "metrics.jsonl").read_text())
    return ["train", "cpu-quick", *TINY, "train.steps=6", "--out", str(run), "--resume"]


# ------------------------------------------------------------------ what a checkpoint holds


def resume(run: Path) -> list[str]:
    return ["train", "cpu-quick", *TINY, "train.steps=6", "--out", str(run), "--resume"]


@case("has a damaged state.json ((top level): Input should be a valid dictionary", "to continue from the newest other")
def state_file_that_is_a_list(i: Inputs) -> list[str]:
    return resume(i.edit_state(i.copy_run(), lambda state: [state]))


@case("has a damaged state.json (optimizer: Field required)", "to continue from the newest other checkpoint")
def state_file_without_optimizer(i: Inputs) -> list[str]:
    return resume(i.edit_state(i.copy_run(), lambda state: state.pop("optimizer") and None))


@case("has a damaged state.json (step: Input should be a valid integer", "to continue from the newest other")
def state_file_with_a_step_in_words(i: Inputs) -> list[str]:
    return resume(i.edit_state(i.copy_run(), lambda state: state.update(step="four")))


@case("has a damaged state.json (step: Input should be greater than or equal to 0)", "to continue from the newest")
def state_file_with_a_negative_step(i: Inputs) -> list[str]:
    return resume(i.edit_state(i.copy_run(), lambda state: state.update(step=-3)))


@case("says it is of step 2, not 4 as its name says", "to continue from the newest other checkpoint")
def state_file_of_another_step(i: Inputs) -> list[str]:
    return ["eval", str(i.edit_state(i.copy_run(), lambda state: state.update(step=2)))]


@case("has a damaged state.json (files: Input should be a valid dictionary", "to continue from the newest other")
def state_file_with_files_as_a_list(i: Inputs) -> list[str]:
    return resume(i.edit_state(i.copy_run(), lambda state: state.update(files=list(state["files"]))))


@case("has files its state.json does not vouch for (model.safetensors, optimizer.safetensors)", "to continue from")
def state_file_vouching_for_nothing(i: Inputs) -> list[str]:
    run = i.edit_state(i.copy_run(), lambda state: state.update(files={}))
    weights = i.latest(run) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one flipped bit of a weight, which no hash would catch any more
    weights.write_bytes(bytes(data))
    return ["eval", str(run)]


@case("has files its state.json does not vouch for (notes.txt)", "to continue from the newest other checkpoint")
def checkpoint_with_an_unlisted_file(i: Inputs) -> list[str]:
    run = i.copy_run()
    (i.latest(run) / "notes.txt").write_text("added later")
    return ["eval", str(run)]


@case("file '", "named in its state.json is missing")
def state_file_vouching_for_a_file_outside(i: Inputs) -> list[str]:
    secret = i.file("secret", "not part of any checkpoint")
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    run = i.copy_run()
    return ["eval", str(i.edit_state(run, lambda state: state["files"].update({"../../../secret": digest})))]


@case("holds non-finite values (NaN or infinity) in", "to continue from the newest other checkpoint (step-0000002)")
def weights_that_are_nan_with_a_valid_hash(i: Inputs) -> list[str]:
    run = i.edit_tensors(i.copy_run(), "model.safetensors", lambda t: next(iter(t.values())).fill_(math.nan))
    return ["eval", str(run)]


@case("holds non-finite values (NaN or infinity) in optimizer", "to continue from the newest other checkpoint")
def optimizer_state_with_infinities(i: Inputs) -> list[str]:
    run = i.edit_tensors(i.copy_run(), "optimizer.safetensors", lambda t: t["0.exp_avg"].fill_(math.inf))
    return resume(run)


@case("was made for a different model or bottleneck (dtype differs:", "use the config it was trained with")
def weights_of_another_dtype(i: Inputs) -> list[str]:
    def to_double(tensors: dict[str, torch.Tensor]) -> None:
        for key in tensors:
            tensors[key] = tensors[key].double()

    return ["eval", str(i.edit_tensors(i.copy_run(), "model.safetensors", to_double))]


def reshaped(key: str) -> Callable[[dict[str, torch.Tensor]], None]:
    def change(tensors: dict[str, torch.Tensor]) -> None:
        tensors[key] = tensors[key].flatten()[:3].clone()

    return change


@case("holds an optimizer state that does not fit this model (parameter 0's exp_avg is (3,)", "resume with the config")
def optimizer_tensor_of_the_wrong_shape(i: Inputs) -> list[str]:
    # the fused AdamW kernel would read past the end of this tensor (the process died with SIGSEGV)
    return resume(i.edit_tensors(i.copy_run(), "optimizer.safetensors", reshaped("0.exp_avg")))


@case("parameter 0 has a step count that is not a non-negative float32 scalar", "resume with the config it was")
def optimizer_step_count_of_another_dtype(i: Inputs) -> list[str]:
    def retype(tensors: dict[str, torch.Tensor]) -> None:
        tensors["0.step"] = tensors["0.step"].long()

    return resume(i.edit_tensors(i.copy_run(), "optimizer.safetensors", retype))


@case("state for parameter 999, which does not exist", "resume with the config it was trained with")
def optimizer_state_for_a_parameter_that_does_not_exist(i: Inputs) -> list[str]:
    def extra(tensors: dict[str, torch.Tensor]) -> None:
        tensors.update({f"999.{k}": tensors[f"0.{k}"].clone() for k in ("step", "exp_avg", "exp_avg_sq")})

    return resume(i.edit_tensors(i.copy_run(), "optimizer.safetensors", extra))


@case("group 0 has betas=[0.5, 0.5], the config gives", "resume with the config it was trained with")
def optimizer_settings_edited_in_the_state_file(i: Inputs) -> list[str]:
    return resume(
        i.edit_state(i.copy_run(), lambda state: state["optimizer"]["param_groups"][0].update(betas=[0.5, 0.5]))
    )


# ------------------------------------------------------------------ numbers on the command line


@case("argument --max-tokens", "must be at least 1, got 0: pass 1 or more")
def score_no_tokens(i: Inputs) -> list[str]:
    return score_a_tale(i, "--max-tokens", "0")


@case("argument --max-tokens", "must be at least 1, got -2: pass 1 or more")
def score_a_negative_number_of_tokens(i: Inputs) -> list[str]:
    return score_a_tale(i, "--max-tokens", "-2")


@case("argument --max-tokens", "expected a whole number in decimal digits, got '1e3': write it like 16")
def score_a_number_of_tokens_in_scientific_notation(i: Inputs) -> list[str]:
    return score_a_tale(i, "--max-tokens", "1e3")


@case("argument --batch-size", "must be at least 1, got 0: pass 1 or more")
def score_in_batches_of_none(i: Inputs) -> list[str]:
    return score_a_tale(i, "--batch-size", "0")


@case("argument --batch-size", "must be at least 1, got 0: pass 1 or more")
def nl_levels_in_batches_of_none(i: Inputs) -> list[str]:
    return ["nl-levels", str(i.llm_run), "--batch-size", "0", "--out", str(i.tmp / "out")]


@case("argument --max-tokens", "must be at least 1, got 0: pass 1 or more")
def nl_levels_no_tokens(i: Inputs) -> list[str]:
    return ["nl-levels", str(i.llm_run), "--max-tokens", "0", "--out", str(i.tmp / "out")]


@case("--temperature must be a finite number, got nan", "pass a number such as the default")
def correctness_at_an_undefined_temperature(i: Inputs) -> list[str]:
    return ["correctness", str(i.llm_run), "--dataset", "math", "--temperature", "nan"]


@case("argument --icl-prompts", "must be at least 0, got -1: pass 0 or more")
def reproduce_a_negative_number_of_prompts(i: Inputs) -> list[str]:
    return ["reproduce", "--out", str(i.tmp / "out"), "--icl-prompts", "-1"]


# ------------------------------------------------------------------ texts to score


@case("'text' holds a lone surrogate \\ud800 at character 4, which is not text", "remove it, or write the whole")
def score_a_text_with_a_lone_surrogate(i: Inputs) -> list[str]:
    return score(i, "--jsonl", i.file("in.jsonl", '{"text": "Once\\ud800 upon a time"}\n'))


@case("is empty", "give it some text to score")
def score_a_text_that_is_only_a_byte_order_mark(i: Inputs) -> list[str]:
    return score(i, "--text", i.file("bom.txt", "\ufeff".encode()))


# ------------------------------------------------------------------ the test


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("bad-inputs") / "run"
    train(tiny_config("train.steps=4", "train.checkpoint_every=2"), run)
    return run


def digest(path: Path) -> str:
    if not os.access(path, os.R_OK):  # a case's unreadable input: its size and time stand in for its bytes
        return f"unreadable {path.stat().st_size} {path.stat().st_mtime_ns}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(roots: list[Path]) -> dict[Path, str]:
    return {p: digest(p) for root in roots for p in root.rglob("*") if p.is_file()}


def run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own errors
        return int(exit_.code)


@pytest.mark.parametrize("name", list(CASES))
def test_a_mistake_gets_one_line_naming_problem_and_fix_and_changes_no_file(
    name, trained, run_dir, checkpoint, data, tmp_path, monkeypatch, capsys
):
    setup, problem, fix = CASES[name]
    inputs = Inputs(tmp_path / "case", trained, run_dir, checkpoint, data, monkeypatch)
    inputs.tmp.mkdir()
    with inputs.later:
        argv = setup(inputs)
        roots = [inputs.tmp, trained, run_dir, checkpoint, data]
        before = digests(roots)
        try:
            status = run_main(argv)
            after = digests(roots)
        finally:
            for path in inputs.tmp.rglob("*"):  # let pytest clean up after the permission cases
                if not path.is_symlink():
                    path.chmod(0o755 if path.is_dir() else 0o644)
    err = capsys.readouterr().err
    assert status != 0
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    match = ERROR_LINE.fullmatch(line)
    assert match, line
    assert match["command"] == argv[0]
    assert problem in line and fix in line and line.index(problem) < line.rindex(fix), line
    changed = [str(p) for p, digest in before.items() if after.get(p) != digest]
    assert not changed, f"changed or deleted: {changed}"
    created = [str(p) for p in after if p not in before]
    assert not created, f"created: {created}"
