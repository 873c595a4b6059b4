"""The `qphi` command: train, evaluate, reproduce, score, sweep, and the data/model housekeeping.

Only the module of the command being run is imported, so `qphi --help` and `qphi --version`
answer without importing torch or transformers (benchmarks/bench_cli.py measures it).

User mistakes (`QPhiError`) are printed on one line and exit with status 2; a Ctrl-C that
a command did not handle itself exits with 130. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence

from qphi import __version__
from qphi.errors import QPhiError

# name → (module defining add_parser(sub) and run(args), one-line summary for `qphi --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("qphi.cli.train", "train a model with a PHi layer"),
    "eval": ("qphi.cli.evaluate", "evaluate a trained run on fresh samples of every level"),
    "reproduce": (
        "qphi.cli.reproduce",
        "reproduce the PFA findings: train every bottleneck × seed, evaluate, write reports",
    ),
    "sweep": (
        "qphi.cli.sweep",
        "codebook scaling: train one run per codebook size (and RQ depth), write sweep.{json,png,html}",
    ),
    "nl-levels": (
        "qphi.cli.nl_levels",
        "PHi and next-token loss per natural-language level of a PHi layer inside a pretrained LLM",
    ),
    "score": ("qphi.cli.score", "score texts token by token with a trained PHi layer inside a pretrained LLM"),
    "correctness": (
        "qphi.cli.correctness",
        "sample reasoning chains, score them with PHi, and test whether PHi picks correct ones",
    ),
    "presets": ("qphi.cli.presets", "list the presets: what each is for and what it costs"),
    "config": ("qphi.cli.config", "print the resolved config of a preset or YAML file with overrides"),
    "data": ("qphi.cli.data", "fetch GSM-8k, MATH and the natural-language levels; check a data folder"),
    "cache": ("qphi.cli.cache", "list or clean qphi's cache of converted models"),
}


class HelpFormatter(argparse.HelpFormatter):
    """Appends '(default: X)' to an option's help unless the help names its default already, or
    there is none to name (None, a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if "default" in help_text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return help_text
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else default
        return f"{help_text} (default: {shown})".strip()


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser, with the full options of the command named in `argv` (others as summaries)."""
    parser = Parser(
        prog="qphi", description="Measure in-context computation with PHi layers (continuous and quantized)."
    )
    parser.add_argument("--version", action="version", version=f"qphi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, summary) in COMMANDS.items():
        if name == chosen:
            importlib.import_module(module).add_parser(sub, name, summary)
        else:
            sub.add_parser(name, help=summary, description=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (`qphi train cpu --out DIR resume=true`),
    # which argparse does not collect into a positional list by itself
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from pydantic import ValidationError

    try:
        return int(args.run(args) or 0)
    except QPhiError as e:
        print(f"qphi {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, always
        return 2
    except ValidationError as e:
        print(f"qphi {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a path too long for the file system fails wherever it is first looked at
        if e.errno != errno.ENAMETOOLONG:
            raise
        print(
            f"qphi {args.command}: error: path '{e.filename}' is too long ({e.strerror}): use shorter names",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"qphi {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(error) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())


if __name__ == "__main__":
    sys.exit(main())
