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

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from training.runs import tiny_config, tiny_overrides

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


@case("model.safetensors' is corrupted (hash mismatch)", "at an earlier one (other checkpoints here: step-0000002)")
def resume_from_a_corrupted_checkpoint(i: Inputs) -> list[str]:
    run = i.copy_run()
    weights = i.latest(run) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return ["train", "cpu-quick", *TINY, "--out", str(run), "--resume"]


@case("model.safetensors' is corrupted (hash mismatch)", "at an earlier one (other checkpoints here: step-0000002)")
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


@case("was made for a different model or bottleneck", "use the config it was trained with")
def evaluate_a_checkpoint_of_another_bottleneck(i: Inputs) -> list[str]:
    return ["eval", str(with_bottleneck(i, "vq"))]


@case("was made for a different model or bottleneck", "use the config it was trained with")
def resume_a_checkpoint_of_another_bottleneck(i: Inputs) -> list[str]:
    return ["train", "cpu-quick", *TINY, "phi.bottleneck=vq", "--out", str(with_bottleneck(i, "vq")), "--resume"]


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


@case("config.yaml' (File exists)", "choose a writable output folder")
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


@case("--samples must be at least 1, got 0", "pass --samples 1 or more")
def evaluate_no_samples(i: Inputs) -> list[str]:
    return ["eval", str(i.run), "--samples", "0"]


# ------------------------------------------------------------------ experiments


@case("--seeds must be >= 1, got 0", "leave it out for the preset's default")
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


@case("holds a reproduction (reproduce.json), not a sweep", "choose another --out folder")
def sweep_into_a_reproduction(i: Inputs) -> list[str]:
    i.file("out/reproduce.json", json.dumps({"preset": "cpu-quick", "overrides": []}))
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "vq", "--sizes", "8"]


@case("--seeds must be >= 1, got 0", "pass --seeds 1 or more")
def sweep_without_seeds(i: Inputs) -> list[str]:
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "vq", "--sizes", "8", "--seeds", "0"]


@case("--sizes must list distinct codebook sizes >= 2, got [1]", "e.g. --sizes 16 64 256")
def sweep_a_codebook_of_one_code(i: Inputs) -> list[str]:
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "vq", "--sizes", "1"]


@case("argument --bottleneck: invalid choice: 'continuous'", "(choose from 'gumbel', 'vq', 'residual', 'fsq')")
def sweep_a_continuous_bottleneck(i: Inputs) -> list[str]:
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "continuous", "--sizes", "8"]


@case("the sweep sets phi.codebook_size itself", "use --bottleneck/--sizes/--stages/--seeds instead")
def sweep_with_a_swept_override(i: Inputs) -> list[str]:
    return ["sweep", "--out", str(i.tmp / "out"), "--bottleneck", "vq", "--sizes", "8", "phi.codebook_size=4"]


# ------------------------------------------------------------------ the LLM commands


def score(i: Inputs, *args: str | Path) -> list[str]:
    return ["score", "--phi", str(i.llm_run), *map(str, args), "--out", str(i.tmp / "out")]


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
    return score(i, "--text", i.file("t.txt", "Once upon a time"), "--model", i.tmp / "other-model")


@case("not found: pass 'smollm2'", "a checkpoint directory or a .gguf file")
def score_with_a_missing_model(i: Inputs) -> list[str]:
    return score(i, "--text", i.file("t.txt", "Once upon a time"), "--model", i.tmp / "no-such-model")


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
