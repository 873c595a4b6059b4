"""`qphi cache list` and `qphi cache clean [NAME ...]`: qphi's cache of converted models."""

from __future__ import annotations

import argparse
import shutil


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="A GGUF model (such as the offline default, smollm2) is dequantised once into $QPHI_CACHE "
        "(default: the user cache folder), in a folder named after the GGUF file's SHA-256 that every environment "
        "shares. Models from the Hugging Face hub live in its own cache (`hf cache ls`).",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list the converted models and their sizes").set_defaults(run=run_list)
    clean = actions.add_parser(
        "clean",
        help="delete converted models (the next use converts again)",
        description="Deletes the named converted models, or all of them and the leftovers of interrupted conversions.",
    )
    clean.add_argument("names", nargs="*", metavar="NAME", help="folders shown by `qphi cache list` (default: all)")
    clean.set_defaults(run=run_clean)


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def run_list(args: argparse.Namespace) -> int:
    from qphi.models.pretrained import cache_dir, cached_models

    entries = cached_models()
    for folder, entry, size in entries:
        what = f"from {entry.source}" if entry else "left by an interrupted or older conversion"
        print(f"{folder.name}  {_size(size):>9}  {what}")
    print(f"{len(entries)} in {cache_dir() / 'models'}, {_size(sum(s for *_, s in entries))}")
    return 0


def run_clean(args: argparse.Namespace) -> int:
    from qphi.errors import QPhiError
    from qphi.models.pretrained import cached_models

    entries = cached_models()
    names = {folder.name for folder, *_ in entries}
    unknown = sorted(set(args.names) - names)
    if unknown:
        raise QPhiError(f"no cached model named {', '.join(unknown)}: see `qphi cache list` for the names")
    chosen = [(f, s) for f, _, s in entries if not args.names or f.name in args.names]
    for folder, _ in chosen:
        shutil.rmtree(folder)
    print(f"deleted {len(chosen)} cached model(s), {_size(sum(s for _, s in chosen))}")
    return 0
