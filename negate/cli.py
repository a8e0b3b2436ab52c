"""The ``negate`` console script: ``negate pretrain|train|infer|evaluate [overrides]``.

Each command is the matching Hydra entry point (``python -m negate.<command>``); overrides pass through, checked
first (``negate.overrides``). ``negate infer PATH... [-m CKPT]`` takes any number of files, folders and globs; an
argument is a path when it exists or holds no ``=``, everything after ``--`` is a path.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

from negate.overrides import FLAGS_WITH_OPTIONAL_VALUE, FLAGS_WITH_VALUE
from negate.paths import CONFIG_DIR as _CONFIG_DIR

COMMANDS = {
    "pretrain": "analyse features per class on a dataset (ranked AUROC / Cohen's d, plots)",
    "train": "extract features, fit a detector, register it under $NEGATE_HOME/models/<date>/",
    "infer": "score files, folders, globs: negate infer PATH... [-m CKPT] [output=csv|json|jsonl]",
    "evaluate": "report on a dataset: metrics with CIs, per generator/source/format, robustness; or protocol=cv",
    "provenance": "metadata evidence only (C2PA, IPTC source type, PNG chunks, EXIF): negate provenance PATH...",
}
CONFIG_DIR = Path(_CONFIG_DIR)


def _quote(value: str) -> str:
    """A Hydra override value that survives spaces, quotes, backslashes and non-ASCII characters: inside a quoted
    value only a quote and the backslashes right before a quote (or the closing quote) are escaped."""
    out, run = [], 0
    for ch in value:
        if ch == "\\":
            run += 1
            continue
        if ch == "'":
            out.append("\\" * (2 * run) + "\\'")
        else:
            out.append("\\" * run + ch)
        run = 0
    out.append("\\" * (2 * run))
    return "'" + "".join(out) + "'"


def usage() -> str:
    lines = ["usage: negate COMMAND [group=option ...] [key=value ...]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, text in COMMANDS.items()]
    lines += ["", "config groups (configs/):"]
    for group in sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir()):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        lines.append(f"  {group.name:<11} {', '.join(options)}")
    lines += ["", "e.g. negate train feature=[spectral,npr] classifier=logreg",
              "     negate train data=manifest data.path=DATA/MANIFEST.tsv split.group_by=source",
              "     negate infer photos/*.jpg more/ -m 20260101_120000 output=csv | csvcut -c path,verdict",
              "     negate train -m feature=spectral,lbp,dct   (Hydra multirun sweep)",
              "'negate COMMAND --help' shows the composed config of that command (infer: also its exit status).",
              "Models live in $NEGATE_HOME (default ~/.local/share/negate); runs and the cache in ./outputs."]
    return "\n".join(lines)


def split_infer_args(args: list[str]) -> tuple[list[str], list[str]]:
    """``negate infer`` arguments -> (paths, Hydra arguments)."""
    paths, out, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            paths += args[i + 1:]
            break
        if arg in ("-m", "--model", "--ckpt"):
            if i + 1 == len(args):
                raise ValueError(f"{arg} needs a model: a folder, a name under NEGATE_HOME/models, latest or shipped")
            out.append(f"ckpt={_quote(args[i + 1])}")
            i += 2
            continue
        if arg.startswith("-") and not os.path.lexists(arg):
            out.append(arg)
            takes_next = arg in FLAGS_WITH_VALUE or (arg in FLAGS_WITH_OPTIONAL_VALUE and i + 1 < len(args)
                                                     and "=" not in args[i + 1] and not args[i + 1].startswith("-"))
            if takes_next and i + 1 < len(args):
                out.append(args[i + 1])
                i += 1
        elif "=" in arg and not os.path.lexists(arg):
            out.append(arg)
        else:
            paths.append(arg)
        i += 1
    return paths, out


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        try:
            print(usage(), flush=True)
        except BrokenPipeError:  # `negate --help | head`: the reader left; nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"error: unknown command {command!r}{hint}; commands: {', '.join(COMMANDS)} (negate --help)",
              file=sys.stderr)
        sys.exit(2)
    if command == "provenance":  # no config: plain argparse
        from negate.provenance_cmd import main as provenance_main

        provenance_main(rest)
        return
    from negate.entry import run

    if command != "infer":
        run(command, rest)
        return
    try:
        paths, rest = split_infer_args(rest)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if not paths and not any(a.startswith(("path=", "-")) for a in rest):
        print("error: no input: give files, folders or globs, e.g. negate infer photos/*.jpg "
              "(negate infer --help)", file=sys.stderr)
        sys.exit(2)

    def hand_over(module) -> None:
        module.CLI_PATHS[:] = paths

    run(command, rest, before=hand_over)


if __name__ == "__main__":
    main()
