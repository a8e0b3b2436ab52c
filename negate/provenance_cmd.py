"""``negate provenance PATH...``: what files say about their origin (C2PA, IPTC, PNG text, EXIF); no model, no pixels.

    negate provenance photo.jpg renders/ 'downloads/**/*.png' [-o table|csv|json|jsonl] [--timeout S] [--max-bytes N]
    python -m negate.provenance_cmd ...      (the same)

PATH is a file, a folder (image files at any depth, as ``negate infer`` finds them, plus HEIF/AVIF/JPEG XL) or a glob
pattern (``**`` recursive); every file is read once even when several PATHs name it. Rows go to stdout: a table on a
terminal, CSV otherwise, or the ``--output`` format (``output=csv`` works too); the columns are ``path``,
``provenance`` (the evidence, ``; ``-separated), ``declared_ai``, ``verified_ai`` and ``provenance_error``. A summary
line goes to stderr (``-q`` drops it). Exit status: 0 every file read, 1 some unreadable, 2 none readable or a usage
error (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import sys
import time

from negate.data.decode import IMAGE_EXTENSIONS
from negate.data.scan import scan_images
from negate.provenance import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_S, ROW_FIELDS, Provenance, read_provenance

OUTPUTS = ("table", "csv", "json", "jsonl")
EXTENSIONS = IMAGE_EXTENSIONS | {".heic", ".heif", ".avif", ".jxl"}
PROG = "negate provenance"
# scan_images reasons that are not unreadable files: duplicates (each file is read once) and non-image entries
_NOT_A_PROBLEM = ("same file as", "symlink to a directory already scanned", "a directory with an image extension",
                  "macOS AppleDouble")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the whole usage)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                epilog="A verified C2PA declaration of AI generation is the only evidence that changes an infer "
                       "verdict (to 'synthetic (declared)'); the rest is shown beside it, and no metadata is not "
                       "evidence of anything.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files, folders or glob patterns")
    p.add_argument("-o", "--output", choices=OUTPUTS, default=None,
                   help="table (default on a terminal), csv (default otherwise), json or jsonl")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"seconds per file (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, metavar="N",
                   help=f"larger files are refused (default {DEFAULT_MAX_BYTES})")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    output = None
    rest = []
    for arg in argv:  # `output=csv`, as `negate infer` spells it
        m = re.fullmatch(r"output=(\w+)", arg)
        if m:
            output = m.group(1)
        else:
            rest.append(arg)
    args = build_parser().parse_args(rest)
    if output is not None:
        if output not in OUTPUTS:
            raise UsageError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        args.output = output
    if not args.paths:
        raise UsageError("no PATH given (a file, a folder or a glob pattern)")
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be > 0, got {args.timeout}")
    if args.max_bytes < 1:
        raise UsageError(f"--max-bytes must be >= 1, got {args.max_bytes}")
    return args


def expand_paths(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(files in order, each once; [(path, reason)] for arguments and folder entries that cannot be files)."""
    files: list[str] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add_file(path: str) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    def add_folder(folder: str) -> None:
        result = scan_images(folder, EXTENSIONS)
        for path in result.files:
            add_file(str(path))
        problems.extend((str(p), reason) for p, reason in result.skipped if not reason.startswith(_NOT_A_PROBLEM))

    for arg in paths:
        if os.path.isdir(arg):
            add_folder(arg)
        elif os.path.lexists(arg):
            add_file(arg)  # read as given: a dangling link or a FIFO gets its reason from read_provenance
        elif glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                problems.append((arg, "no file matches this pattern"))
            for match in matches:
                add_folder(match) if os.path.isdir(match) else add_file(match)
        else:
            problems.append((arg, "no such file or folder"))
    return files, problems


def _print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="negate provenance")
    for column in ("path", "provenance", "declared", "verified"):
        table.add_column(column, overflow="fold")
    for row in rows:
        parts = [row["provenance"]] if row["provenance"] else []
        if row["provenance_error"]:
            parts.append(f"error: {row['provenance_error']}")
        evidence = " | ".join(parts) or "-"
        table.add_row(escape(row["path"]), escape(evidence), "yes" if row["declared_ai"] else "no",
                      "yes" if row["verified_ai"] else "no")
    Console(file=sys.stdout).print(table)


def write_rows(rows: list[dict], fmt: str) -> None:
    out = sys.stdout
    if fmt == "table":
        _print_table(rows)
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(ROW_FIELDS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    elif fmt == "json":
        out.write(json.dumps(rows, indent=1) + "\n")
    else:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    out.flush()


def run(argv: list[str] | None = None) -> int:
    """The command without ``sys.exit``: returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
    except UsageError as e:
        print(f"{PROG}: error: {e} (see {PROG} --help)", file=sys.stderr)
        return 2
    try:
        sys.stdout.reconfigure(errors="backslashreplace")  # odd file names must not stop the output
    except (AttributeError, ValueError):
        pass
    t0 = time.monotonic()
    files, problems = expand_paths(args.paths)
    results = [read_provenance(f, max_bytes=args.max_bytes, timeout_s=args.timeout) for f in files]
    results += [Provenance(path=p, evidence=(), error=reason) for p, reason in problems]
    rows = [r.as_row() for r in results]
    unreadable = [r for r in results if r.error and not r.evidence]
    fmt = args.output or ("table" if sys.stdout.isatty() else "csv")
    try:
        write_rows(rows, fmt)
    except BrokenPipeError:  # `| head`: the reader went away; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    if len(unreadable) == len(results):
        first = unreadable[0] if unreadable else None
        detail = f" ({first.path}: {first.error})" if first else ""
        print(f"{PROG}: error: nothing readable among {len(results)} path(s){detail}", file=sys.stderr)
        return 2
    if not args.quiet:
        declared = sum(r.declared_ai for r in results)
        verified = sum(r.verified_ai for r in results)
        print(f"{PROG}: {len(results)} file(s) in {time.monotonic() - t0:.2f} s: {declared} declare AI "
              f"({verified} verified), {len(unreadable)} unreadable", file=sys.stderr)
    return 1 if unreadable else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``negate provenance`` (``argv``: the arguments after the command name)."""
    try:
        code = run(argv)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
