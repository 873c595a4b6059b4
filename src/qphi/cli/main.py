"""The `qphi` command: train, evaluate, reproduce, score, sweep.

User mistakes (`QPhiError`) are printed on one line and exit with status 2; a Ctrl-C that
a command did not handle itself exits with 130. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from qphi.cli import correctness, evaluate, nl_levels, reproduce, score, sweep, train
from qphi.errors import QPhiError

COMMANDS = (train, evaluate, reproduce, sweep, nl_levels, score, correctness)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qphi", description="Measure in-context computation with PHi layers (continuous and quantized)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (`qphi train cpu --out DIR resume=true`),
    # which argparse does not collect into a positional list by itself
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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


def _one_line(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())


if __name__ == "__main__":
    sys.exit(main())
