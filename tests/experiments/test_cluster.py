"""Running an experiment's middle elsewhere: `--plan` writes one `qphi train` command per run and
SLURM scripts over them, `--analyse-only` collects exactly those runs; the SLURM templates for one
training on one node or several. The scripts are checked offline: `bash -n`, then run with stub
`qphi`, `srun`, `scontrol` and `torchrun` programs that record what they were asked to run."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from torch.distributed.run import get_args_parser
from training.runs import file_digests, tiny_overrides

from qphi.cli.main import build_parser, main
from qphi.cli.options import config_from_args
from qphi.experiments.reproduce import ReproduceConfig
from qphi.experiments.runs import ANALYSE_SCRIPT, ARRAY_SCRIPT, PLAN
from qphi.experiments.sweep import SweepConfig
from qphi.training import load_run_config
from qphi.training.run_dir import saved_config

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = tiny_overrides("train.steps=2", "train.checkpoint_every=2", "eval.levels=[0,3]")


def stub(folder: Path, name: str, body: str) -> None:
    """An executable `name` in `folder` that runs the shell `body` (its arguments in "$@")."""
    path = folder / name
    path.write_text(f"#!/bin/bash\nset -eu\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def recorder(tmp_path) -> tuple[dict[str, str], Path]:
    """An environment whose `qphi` and `torchrun` write their arguments, one per line, to a file
    named after the array task (or "call") in the returned folder; `srun` drops its own options
    and runs the rest; `scontrol show hostnames` names two nodes."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    record = 'printf "%s\\n" "$@" > "$CALLS/$(basename "$0")-${SLURM_ARRAY_TASK_ID:-call}"'
    stub(bin_dir, "qphi", record)
    stub(bin_dir, "torchrun", record)
    stub(bin_dir, "srun", 'while [[ "$1" == --* ]]; do shift; done\nexec "$@"')
    stub(bin_dir, "scontrol", 'printf "node-a\\nnode-b\\n"')
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls)}, calls


def recorded(calls: Path, name: str) -> list[str]:
    return (calls / name).read_text().splitlines()


def test_the_slurm_scripts_parse(tmp_path):
    main(["reproduce", "--out", str(tmp_path), "--plan", *OVERRIDES])
    scripts = [*ROOT.glob("slurm/*.sbatch"), tmp_path / ARRAY_SCRIPT, tmp_path / ANALYSE_SCRIPT]
    assert len(scripts) == 4
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_plan_writes_the_commands_whose_runs_analyse_only_collects(tmp_path, capsys, recorder):
    env, calls = recorder
    out = tmp_path / "out"
    argv = ["reproduce", "--out", str(out), "--bottlenecks", "continuous", "vq", "--seeds", "2", "--icl-prompts", "2"]
    assert main([*argv, "--plan", *OVERRIDES]) == 0
    commands = (out / PLAN).read_text().splitlines()
    assert capsys.readouterr().out.splitlines() == commands  # stdout holds the commands alone
    config = ReproduceConfig(out=out, bottlenecks=("continuous", "vq"), seeds=2, icl_prompts=2, overrides=OVERRIDES)
    runs = config.runs()
    assert [shlex.split(c) for c in commands] == [shlex.split(r.command()) for r in runs]

    # the job array: one task per line, each running its line and nothing else
    script = (out / ARRAY_SCRIPT).read_text()
    first, last = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", script).groups())
    assert (first, last) == (0, len(commands) - 1)
    for task in range(first, last + 1):
        subprocess.run(["bash", str(out / ARRAY_SCRIPT)], env={**env, "SLURM_ARRAY_TASK_ID": str(task)}, check=True)
        assert recorded(calls, f"qphi-{task}") == shlex.split(commands[task])[1:]
    beyond = subprocess.run(["bash", str(out / ARRAY_SCRIPT)], env={**env, "SLURM_ARRAY_TASK_ID": str(last + 1)})
    assert beyond.returncode != 0

    # before the runs exist, --analyse-only refuses and writes nothing
    before = file_digests(out)
    assert main([*argv, "--analyse-only", *OVERRIDES]) == 2
    assert "4 of 4 runs are not finished as planned: continuous-seed0 (not started)" in capsys.readouterr().err
    assert file_digests(out) == before

    # run the commands as a scheduler would: they parse, and each trains the run the reproduction plans
    for command, planned in zip(commands, runs, strict=True):
        assert main(shlex.split(command)[1:]) == 0
        assert saved_config(planned.run_dir) == planned.config()
    trained = file_digests(out / "runs")

    # the collecting job runs this very reproduction with --analyse-only
    subprocess.run(["bash", str(out / ANALYSE_SCRIPT)], env=env, check=True)
    analyse = recorded(calls, "qphi-call")
    assert analyse[0] == "reproduce" and "--analyse-only" in analyse
    args = build_parser(analyse).parse_args(analyse)
    collect = config_from_args(ReproduceConfig, args, bottlenecks=tuple(args.bottlenecks))
    assert collect == config.replace(out=out.resolve(), analyse_only=True)
    assert main(analyse) == 0
    assert (out / "report.html").is_file()
    after = file_digests(out / "runs")
    assert {k: v for k, v in after.items() if k in trained} == trained  # collected, not retrained
    assert all(f"{r.label}/analysis.json" in after for r in runs)


def test_a_sweep_plans_its_runs_too(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", "--out", str(out), "--bottleneck", "fsq", "--sizes", "16", "64", "--plan", *OVERRIDES]) == 0
    commands = capsys.readouterr().out.splitlines()
    assert commands == (out / PLAN).read_text().splitlines()
    config = SweepConfig(out=out, bottleneck="fsq", sizes=(16, 64), overrides=tuple(OVERRIDES))
    expected = {16: [4, 4], 64: [8, 8]}
    for command, runs in zip(commands, config.per_point().values(), strict=True):
        args = shlex.split(command)
        assert args[:3] == ["qphi", "train", "cpu-quick"] and args[-3:] == ["--out", str(runs[0].run_dir), "--resume"]
        trained = load_run_config("cpu-quick", args[3:-3])
        assert trained == runs[0].config()
        assert trained.phi.bottleneck.fsq_levels == expected[int(runs[0].label.split("-K")[1].split("-")[0])]


def test_one_training_on_one_node(recorder):
    env, calls = recorder
    args = ["paper", "phi.bottleneck=vq", "--out", "runs/paper-vq", "--resume"]
    subprocess.run(["bash", str(ROOT / "slurm/train-node.sbatch"), *args], env={**env, "SLURM_GPUS_ON_NODE": "4"},
                   check=True)  # fmt: skip
    launch = get_args_parser().parse_args(recorded(calls, "torchrun-call"))
    assert (launch.standalone, launch.nnodes, launch.nproc_per_node) == (True, "1", "4")
    assert launch.module and launch.training_script == "qphi.cli.main"
    assert launch.training_script_args == ["train", *args]
    assert build_parser(launch.training_script_args).parse_args(launch.training_script_args).config == "paper"


def test_one_training_on_several_nodes(recorder):
    env, calls = recorder
    args = ["paper", "phi.bottleneck=vq", "--out", "/shared/runs/paper-vq", "--resume"]
    slurm = {"SLURM_GPUS_ON_NODE": "8", "SLURM_NNODES": "2", "SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "node-[a-b]"}
    subprocess.run(["bash", str(ROOT / "slurm/train-nodes.sbatch"), *args], env={**env, **slurm}, check=True)
    launch = get_args_parser().parse_args(recorded(calls, "torchrun-call"))
    assert (launch.nnodes, launch.nproc_per_node, launch.rdzv_id) == ("2", "8", "77")
    assert (launch.rdzv_backend, launch.rdzv_endpoint) == ("c10d", "node-a:29500")
    assert launch.module and launch.training_script_args == ["train", *args]
    parsed = build_parser(launch.training_script_args).parse_args(launch.training_script_args)
    assert load_run_config(parsed.config, parsed.overrides).phi.bottleneck.name == "vq"
