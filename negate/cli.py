"""The ``negate`` console script: ``negate pretrain|train|infer|evaluate [overrides]``.

Each command is the matching Hydra entry point (``python -m negate.<command>``); overrides pass through unchanged.
``negate infer PATH [-m CKPT]`` is shorthand for ``path=PATH ckpt=CKPT``.
"""

from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

from negate.paths import CONFIG_DIR as _CONFIG_DIR

COMMANDS = {
    "pretrain": "analyse features per class on a dataset (ranked AUROC / Cohen's d, plots)",
    "train": "extract features, fit a detector, write outputs/models/<date>/",
    "infer": "score a file or folder: negate infer PATH [-m CKPT] [output=csv|json]",
    "evaluate": "report on a dataset: metrics with CIs, per generator/source/format, robustness; or protocol=cv",
}
CONFIG_DIR = Path(_CONFIG_DIR)


def _quote(value: str) -> str:
    """A Hydra override value that survives spaces, quotes and non-ASCII characters."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def usage() -> str:
    lines = ["usage: negate COMMAND [group=option ...] [key=value ...]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, text in COMMANDS.items()]
    lines += ["", "config groups (configs/):"]
    for group in sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir()):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        lines.append(f"  {group.name:<11} {', '.join(options)}")
    lines += ["", "e.g. negate train feature=[spectral,npr] classifier=logreg",
              "     negate train data=manifest data.path=DATA/MANIFEST.tsv split.group_by=source",
              "     negate infer photo.jpg -m outputs/models/20260101_120000",
              "     negate train -m feature=spectral,lbp,dct   (Hydra multirun sweep)",
              "'negate COMMAND --help' shows the composed config of that command."]
    return "\n".join(lines)


def _infer_args(args: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("-m", "--model", "--ckpt") and i + 1 < len(args):
            out.append(f"ckpt={_quote(args[i + 1])}")
            i += 2
            continue
        if "=" not in arg and not arg.startswith("-"):
            out.append(f"path={_quote(arg)}")
        else:
            out.append(arg)
        i += 1
    return out


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"negate: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    if command == "infer":
        rest = _infer_args(rest)
    sys.argv = [f"negate-{command}", *rest]
    import_module(f"negate.{command}").main()


if __name__ == "__main__":
    main()
