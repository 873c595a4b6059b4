"""What every experiment does with its runs: claim an output folder, train each run (or resume
or reuse it) and analyse it — one after another, in parallel processes, or as commands that
any scheduler runs (`write_plan`) before the experiment collects them.

A run is a `PlannedRun`: a preset and the `qphi train` overrides that make its config. The
experiment builds its config from exactly those overrides, so the command a plan writes
trains the very run the experiment would have trained and later reuses.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

import torch
from pydantic import Field
from tqdm.auto import tqdm

from qphi.configuration import Config
from qphi.errors import QPhiError
from qphi.experiments.analysis import AnalysedRun, analyse_run, analysis_is_current
from qphi.io import read_json, write_json, write_text
from qphi.training import RunConfig, load_run_config, train
from qphi.training.distributed import check_device
from qphi.training.run_dir import config_changes, latest_step, saved_config

EXPERIMENT_MARKERS = {"reproduce.json": "reproduction", "sweep_config.json": "sweep"}
# what an experiment sets in every run itself: an override of one of these would silently change every run
RUN_KEYS = ("phi.bottleneck", "train.seed", "train.device")
PLAN, ARRAY_SCRIPT, ANALYSE_SCRIPT = "plan.txt", "runs.sbatch", "analyse.sbatch"


@dataclass(frozen=True)
class PlannedRun:
    """One training run of an experiment: `qphi train PRESET OVERRIDES --out RUN_DIR`."""

    label: str  # e.g. "gumbel-seed0": the run's folder under OUT/runs and its log's name
    run_dir: Path
    preset: str
    overrides: tuple[str, ...]

    def config(self) -> RunConfig:
        return load_run_config(self.preset, list(self.overrides))

    def command(self) -> str:
        """The shell command that trains it (resuming a stopped attempt), for a scheduler."""
        return shlex.join(["qphi", "train", self.preset, *self.overrides, "--out", str(self.run_dir), "--resume"])


class ExperimentConfig(Config):
    """What every experiment that trains many runs takes besides its own options."""

    name: ClassVar[str]  # the command: "reproduce", "sweep"
    marker: ClassVar[str]  # the file in OUT that says which experiment the folder holds
    what: ClassVar[str]  # how errors name it: "reproduction", "sweep"

    preset: str = "cpu-quick"
    out: Path
    device: Literal["auto", "cpu", "cuda"] = "auto"
    overrides: tuple[str, ...] = ()  # key=value applied to every run
    jobs: int = Field(1, ge=1)  # runs trained and analysed at once, each in its own process
    threads: int = Field(1, ge=1)  # per process when jobs > 1
    analyse_only: bool = False  # collect finished runs (trained from the plan's commands); train nothing

    def runs(self) -> list[PlannedRun]:
        """Every run, in the order of the experiment's results."""
        raise NotImplementedError

    def options(self) -> dict[str, object]:
        """The experiment's own options, as its command line names them (see `option_args`)."""
        raise NotImplementedError

    def recorded(self) -> dict[str, Any]:
        """What OUT/marker records: a folder holds the runs of one such experiment."""
        return {"preset": self.preset, "overrides": list(self.overrides)}

    def command(self) -> list[str]:
        """This experiment's `qphi` command line."""
        shared = {"device": self.device, "jobs": self.jobs if self.jobs > 1 else None}
        shared |= {"threads": self.threads if self.jobs > 1 else None, "analyse_only": self.analyse_only}
        options = {"preset": self.preset, "out": self.out.resolve(), **self.options(), **shared}
        return ["qphi", self.name, *option_args(options), *self.overrides]


def plan(config: ExperimentConfig) -> list[PlannedRun]:
    """Write OUT/plan.txt (one `qphi train` command per run), the SLURM job array OUT/runs.sbatch
    over it and OUT/analyse.sbatch (this experiment with `analyse_only`); train nothing."""
    runs = config.runs()
    eval_device(config.device)
    if any(c.isspace() for c in str(config.out.resolve())):
        raise QPhiError(f"'{config.out}' holds a space, which an #SBATCH line cannot: choose an --out without spaces")
    claim(config.out, config.marker, config.recorded(), config.what)
    write_plan(config.out, runs, config.replace(analyse_only=True).command(), config.name)
    return runs


def analysed_runs(config: ExperimentConfig, icl_prompts: int) -> list[AnalysedRun]:
    """Every run of the experiment trained (or resumed, or reused; with `analyse_only` only
    collected) and analysed, in the order of `config.runs()`."""
    runs = config.runs()
    device = eval_device(config.device)
    check_runs(runs, config.out, config.analyse_only)
    claim(config.out, config.marker, config.recorded(), config.what)
    logs = config.out / "logs"
    return train_and_analyse(runs, device, icl_prompts, config.jobs, config.threads, config.name, logs)


def planned_run(out: Path, label: str, preset: str, bottleneck: str, seed: int, device: str, *more: str) -> PlannedRun:
    """The run `label` of an experiment in `out`: `bottleneck`, `seed` and `device` set, then `more` overrides."""
    overrides = (f"phi.bottleneck={bottleneck}", f"train.seed={seed}", f"train.device={device}", *more)
    return PlannedRun(label, out.resolve() / "runs" / label, preset, overrides)


def checked(runs: list[PlannedRun]) -> list[PlannedRun]:
    """`runs`, once each config has built (a bad override is a one-line error before anything is written)."""
    for run in runs:
        run.config()
    return runs


def refuse_run_keys(overrides: Sequence[str], keys: Sequence[str], experiment: str, options: str) -> None:
    """An experiment's overrides may not set what it sets per run (`keys`, or a key inside one);
    `options` set those."""
    given = {o.partition("=")[0].strip() for o in overrides}
    set_here = sorted(g for g in given if any(g == k or g.startswith(f"{k}.") for k in keys))
    if set_here:
        raise QPhiError(f"the {experiment} sets {', '.join(set_here)} itself: use {options} instead")


def claim(out: Path, marker: str, wanted: dict[str, Any], what: str) -> None:
    """Record in `out/marker` what this folder holds; refuse to mix two different experiments
    (`what`, e.g. "reproduction") in one folder."""
    if (out / "config.yaml").is_file():
        raise QPhiError(f"'{out}' holds a training run (config.yaml), not a {what}: choose another --out folder")
    for other, kind in EXPERIMENT_MARKERS.items():
        if other != marker and (out / other).is_file():
            raise QPhiError(f"'{out}' holds a {kind} ({other}), not a {what}: choose another --out folder")
    path = out / marker
    if path.is_file():
        saved = read_json(path)  # a torn or foreign file is a one-line error
        if saved != wanted:
            raise QPhiError(
                f"'{out}' holds a {what} of {saved}, not {wanted}: use another --out, or the same options to resume"
            )
        return
    write_json(path, wanted)  # an unwritable folder is a QPhiError from write_json


def ensure_trained(config: RunConfig, run_dir: Path, label: str) -> None:
    """Train the run in `run_dir`, resume it from its last checkpoint, or reuse it when that
    checkpoint is the final step. An interrupted training raises KeyboardInterrupt (run the
    same command again to resume)."""
    done = latest_step(run_dir)
    state = "trained" if done == config.train.steps else ("resuming" if done else "training")
    tqdm.write(f"{label}: {state} ({run_dir})")
    if done != config.train.steps:
        result = train(config, run_dir, resume=done is not None, evaluate=False)
        if result.interrupted:
            raise KeyboardInterrupt


def eval_device(device: str) -> str:
    """Where analyses run: the training device (`auto` = CUDA when there is one). Asking for a GPU
    this machine lacks is refused here, before an experiment writes anything."""
    name = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    check_device(name)
    return name


def check_runs(runs: Sequence[PlannedRun], out: Path, analyse_only: bool) -> None:
    """Before anything is written: a finished run must have been trained with its planned config
    (or it would be reused as if it were), and with `analyse_only` every run must be finished.
    Otherwise one line names the runs that are not."""
    problems = []
    for run in runs:
        config = run.config()
        done, steps = latest_step(run.run_dir), config.train.steps
        if done == steps and (changed := trained_otherwise(run.run_dir, config)):
            problems.append(f"{run.label} (trained with another {', '.join(changed)})")
        elif done != steps and analyse_only:
            problems.append(f"{run.label} ({'not started' if done is None else f'step {done} of {steps}'})")
    if not problems:
        return
    shown = ", ".join(problems[:4]) + (f" and {len(problems) - 4} more" if len(problems) > 4 else "")
    if analyse_only:
        raise QPhiError(
            f"{len(problems)} of {len(runs)} runs are not finished as planned: {shown}: run their commands from "
            f"{out / PLAN} (written by --plan), then --analyse-only again"
        )
    raise QPhiError(
        f"{len(problems)} of {len(runs)} runs in '{out}' were trained otherwise: {shown}: move them away to train "
        "them again, or choose another --out"
    )


def trained_otherwise(run_dir: Path, config: RunConfig) -> list[str]:
    """The first keys (up to three) in which the finished run in `run_dir` differs from `config`,
    leaving out what a resume may change (e.g. train.device)."""
    return config_changes(saved_config(run_dir), config)[:3]


def train_and_analyse(
    runs: Sequence[PlannedRun], device: str, icl_prompts: int, jobs: int, threads: int, desc: str, logs: Path
) -> list[AnalysedRun]:
    """Train (or resume or reuse) and analyse every run, in order; with `jobs` > 1 in as many
    processes of `threads` threads each, their output in `logs/LABEL.log`. The analyses are the
    same either way (at the same number of threads)."""
    if jobs > 1:
        _in_processes(runs, device, icl_prompts, jobs, threads, desc, logs)
        return [analyse_run(run.run_dir, device, icl_prompts) for run in runs]  # each read back from its cache
    analysed = []
    for index, run in enumerate(tqdm(runs, desc=desc, unit="run", position=0), start=1):
        ensure_trained(run.config(), run.run_dir, f"[{index}/{len(runs)}] {run.label}")
        analysed.append(analyse_run(run.run_dir, device, icl_prompts))
    return analysed


def _in_processes(
    runs: Sequence[PlannedRun], device: str, icl_prompts: int, jobs: int, threads: int, desc: str, logs: Path
) -> None:
    """The runs that still need training or an analysis, `jobs` at a time in fresh processes;
    one progress bar counts the runs done."""
    todo = [
        r
        for r in runs
        if latest_step(r.run_dir) != r.config().train.steps or not analysis_is_current(r.run_dir, icl_prompts)
    ]
    progress = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=desc, unit="run", position=0)
    context = get_context("spawn")  # a fork of a process with torch's threads running can deadlock
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_child, initargs=(threads,)) as pool:
        futures: dict[Future, PlannedRun] = {
            pool.submit(_child_run, run, device, icl_prompts, logs / f"{run.label}.log"): run for run in todo
        }
        tqdm.write(f"{len(todo)} run(s) in {min(jobs, max(1, len(todo)))} processes; their output is in {logs}/")
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # a run's error (e.g. a diverged training) stops the experiment here
                    progress.update(1)
                    tqdm.write(f"{futures[future].label}: done")
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # running trainings save a checkpoint on Ctrl-C
            raise
        finally:
            progress.close()


def _start_child(threads: int) -> None:
    """Each process computes on `threads` threads; a Ctrl-C reaches the training loop's own
    handler (checkpoint, then stop) and is ignored elsewhere, where the parent stops the pool."""
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _child_run(run: PlannedRun, device: str, icl_prompts: int, log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as f, _output_to(f):
        ensure_trained(run.config(), run.run_dir, run.label)
        analyse_run(run.run_dir, device, icl_prompts)


@contextlib.contextmanager
def _output_to(f: IO[str]) -> Iterator[None]:
    """Everything this process writes to stdout and stderr (progress bars included) goes to `f`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(f.fileno(), 1)
    os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def write_plan(out: Path, runs: Sequence[PlannedRun], analyse: Sequence[str], name: str) -> list[Path]:
    """OUT/plan.txt (one `qphi train` command per run, nothing else), OUT/runs.sbatch (a SLURM job
    array whose task i runs line i + 1) and OUT/analyse.sbatch (`analyse`: the command that
    collects the finished runs). Paths are absolute, so the jobs may start in any folder."""
    out = out.resolve()
    plan = write_text(out / PLAN, "".join(run.command() + "\n" for run in runs))
    array = write_text(out / ARRAY_SCRIPT, _array_script(out, len(runs), name))
    collect = write_text(out / ANALYSE_SCRIPT, _analyse_script(out, shlex.join(analyse), name))
    (out / "logs").mkdir(exist_ok=True)  # SLURM writes the jobs' output there but does not create it
    return [plan, array, collect]


def _array_script(out: Path, count: int, name: str) -> str:
    return f"""#!/bin/bash
# One SLURM array task per line of {PLAN}: task i trains the run of line i + 1 (resuming it if it was stopped).
# Resources go on the command line, e.g.:  sbatch --gpus=1 --cpus-per-task=8 --time=24:00:00 {out / ARRAY_SCRIPT}
#SBATCH --job-name=qphi-{name}
#SBATCH --array=0-{count - 1}
#SBATCH --output={out}/logs/%x-%A_%a.log
set -euo pipefail
command=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(str(out / PLAN))})
if [ -z "$command" ]; then
  echo "no line $((SLURM_ARRAY_TASK_ID + 1)) in {out / PLAN}" >&2
  exit 1
fi
echo "$command"
eval "$command"
"""


def _analyse_script(out: Path, command: str, name: str) -> str:
    return f"""#!/bin/bash
# After every task of {ARRAY_SCRIPT} has finished: analyse the runs and write the reports into {out}.
#   jid=$(sbatch --parsable --gpus=1 {out / ARRAY_SCRIPT})
#   sbatch --dependency=afterok:$jid --gpus=1 {out / ANALYSE_SCRIPT}
#SBATCH --job-name=qphi-{name}-analyse
#SBATCH --output={out}/logs/%x-%j.log
set -euo pipefail
{command}
"""


def option_args(values: dict[str, object]) -> list[str]:
    """`--name value …` for a command line: lists become several values, True a bare flag,
    None and False nothing."""
    args: list[str] = []
    for name, value in values.items():
        if value is None or value is False:
            continue
        args.append(f"--{name.replace('_', '-')}")
        if isinstance(value, list | tuple):
            args += [str(v) for v in value]
        elif value is not True:
            args.append(str(value))
    return args
