"""``negate infer PATH... [-m CKPT] [output=table|csv|json|jsonl] [output_file=FILE|-]``, or
``python -m negate.infer path=PATH (or path=[A,B]) ckpt=...``: score files, folders and globs with a saved model folder.

One row per input, a dict whose keys are the output columns (``path, prob_synthetic, verdict, reason, error``): the
CSV/JSON writers take their columns from the rows, so a new column is one more key. ``verdict`` is ``synthetic``,
``human``, ``uncertain`` (``reason`` says why: the probability lies in the model's uncertain band, or the image is
too small to judge; on a ``human`` verdict it warns when the file is a JPEG saved below quality 90, where the
model misses most fakes) or ``error`` (``error`` says why; the input is listed in the run folder's ``skipped.csv``).
With ``provenance=on`` (default) the metadata evidence of :mod:`negate.provenance` follows (``provenance,
declared_ai, verified_ai, provenance_error``); a verified C2PA declaration of AI generation makes the verdict
``synthetic (declared)``. Evidence never enters the model.

Exit status: 0 when every input was scored, 1 when some could not be read (listed with their reasons), 2 on a usage or
config error, a missing or refused model folder, or when no input could be scored; 128 + the signal number when
interrupted (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

import hydra
import numpy as np
from omegaconf import DictConfig

from negate.data.decode import DecodeError, image_size
from negate.data.jpeg_quality import estimate_jpeg_quality
from negate.data.records import ImageRecord
from negate.ensemble import make_runner
from negate.errors import InputError, NothingScoredError
from negate.inputs import as_paths, collect_inputs
from negate.model_folder import LoadedModel, load_checked_model
from negate.operating_points import DEFAULT, at_operating_point, point_names
from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers
from negate.registry import model_roots
from negate.tables import print_predictions

log = logging.getLogger(__name__)
register_resolvers()

# The PATH arguments of ``negate infer``: the console script runs this entry point in its own process and hands them
# over here, not through Hydra's override grammar (thousands of paths from a shell glob parse slowly and need quoting).
CLI_PATHS: list[str] = []

OUTPUTS = ("table", "csv", "json", "jsonl")
COLUMNS = ("path", "prob_synthetic", "verdict", "reason", "error", "provenance", "declared_ai", "verified_ai",
           "provenance_error")
VERDICTS = ("synthetic", "human", "uncertain")
MIN_SIDE = 32  # default of ``min_side``: below this many pixels on the shorter side an image is too small to judge
# A "human" verdict on a JPEG last saved below this quality says little: under the family protocol the shipped recipe
# caught 10% of the held-out modern fakes saved that way at its fold thresholds, against 42% of the PNG ones (README)
WEAK_JPEG_QUALITY = 90
WEAK_EVIDENCE = "weak evidence: "


def _size_reason(path: str, min_side: int) -> str:
    try:
        width, height = image_size(path)
    except DecodeError:
        return ""
    if min(width, height) < min_side:
        return f"{width}x{height} image: under the {min_side} px minimum side, too small to judge"
    return ""


def _weak_jpeg_reason(path: str) -> str:
    quality = estimate_jpeg_quality(path)
    if quality is None or quality >= WEAK_JPEG_QUALITY:
        return ""
    return f"{WEAK_EVIDENCE}JPEG saved at quality ~{quality}, compression hides generation traces"


def predict(cfg: DictConfig, paths=(), progress: bool = True) -> tuple[list[dict], LoadedModel]:
    """One row per input of ``cfg.path`` and ``paths``, in order (see the module docstring)."""
    given = [*as_paths(cfg.get("path")), *as_paths(paths)]
    if not given:
        raise InputError("no input: give files, folders or globs, e.g. negate infer photos/*.jpg")
    model, families = load_checked_model(cfg.ckpt, model_roots(cfg), cfg.get("allow_remote_code", False))
    model = at_operating_point(model, cfg.get("operating_point"))
    inputs = collect_inputs(given)
    records = [ImageRecord(p) for p, reason in inputs if not reason]
    runner = make_runner(model.pipeline, cfg, families, progress=progress)
    kept, table = runner.features(records) if records else ([], None)
    prob = model.detector.predict_proba(table.X)[:, 1] if kept else np.zeros(0)
    scored = {records[i].path: (float(p), v) for i, p, v in zip(kept, prob, model.verdicts(prob))}
    failed = dict(runner.failures(records, table, kept)) if records else {}
    lo, hi = model.uncertain
    min_side = int(cfg.get("min_side", MIN_SIDE))
    rows = []
    for path, reason in inputs:
        if path in scored:
            p, verdict = scored[path]
            why = _size_reason(path, min_side)
            if why:
                verdict = "uncertain"
            elif verdict == "uncertain":
                why = f"p in the uncertain band [{lo:.3f}, {hi:.3f})"
            elif verdict == "human":
                why = _weak_jpeg_reason(path)
            rows.append({"path": path, "prob_synthetic": p, "verdict": verdict, "reason": why, "error": ""})
        else:
            error = reason or failed.get(path, "not extracted")
            rows.append({"path": path, "prob_synthetic": None, "verdict": "error", "reason": "", "error": error})
    if str(cfg.get("provenance", "on")).lower() not in ("off", "false", "0", "none"):
        add_provenance(rows)
    return rows, model


def add_provenance(rows: list[dict]) -> None:
    """Evidence columns beside the pixel score (never an input to the model); a verified C2PA declaration of AI
    generation turns a scored row's verdict into ``synthetic (declared)`` (negate.provenance)."""
    from negate.provenance import apply_verdict_rule, read_provenance

    for row in rows:
        prov = read_provenance(row["path"])
        extra = {k: v for k, v in prov.as_row().items() if k != "path"}
        if row["verdict"] != "error":
            row["verdict"] = apply_verdict_rule(row["verdict"], prov)
        row.update(extra)


def _csv_value(value):
    return "" if value is None else value


def format_rows(rows: list[dict], fmt: str) -> str:
    """``rows`` as csv (header from the row keys), json (one list) or jsonl (one object per line)."""
    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows)
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _csv_value(v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def write_rows(rows: list[dict], fmt: str, target: Path | TextIO) -> None:
    """Write to a file (through a temporary file and a rename) or to a stream such as ``sys.stdout``."""
    text = format_rows(rows, fmt)
    if not isinstance(target, (str, os.PathLike)):
        try:
            target.write(text)
            target.flush()
        except BrokenPipeError:  # `negate infer ... | head`: the reader has all it wants
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, target.fileno())
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_skipped_rows(rows: list[dict], path: Path) -> int:
    skipped = [r for r in rows if r["error"]]
    if skipped:
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["path", "reason"])
            writer.writerows((r["path"], r["error"]) for r in skipped)
    return len(skipped)


def summary(rows: list[dict], model: LoadedModel, skipped_csv: Path, min_side: int) -> str:
    counts = Counter(r["verdict"] for r in rows)
    scored = sum(counts[v] for v in VERDICTS)
    lines = [f"{scored} scored ({', '.join(f'{counts[v]} {v}' for v in VERDICTS)}), {counts['error']} skipped"
             + (f": see {skipped_csv}" if counts["error"] else "")]
    weak = sum(r["verdict"] == "human" and str(r.get("reason", "")).startswith(WEAK_EVIDENCE) for r in rows)
    if weak:
        lines.append(f"{weak} of the human verdicts are JPEGs saved below quality {WEAK_JPEG_QUALITY}, where the model "
                     "misses most AI images: read them as weak evidence")
    lo, hi = model.uncertain
    synthetic_from, human_below = max(hi, model.threshold), min(lo, model.threshold)
    point = model.info.get("operating_point", DEFAULT)
    others = [name for name in point_names(model.info) if name != point]
    point_text = f"operating point {point}" + (f" (also stored: {', '.join(others)})" if others else "")
    lines.append(f"model {model.folder}, {point_text}: threshold {model.threshold:.3f}; synthetic when p >= "
                 f"{synthetic_from:.3f}, human when p < {human_below:.3f}, uncertain in between or when the image is "
                 f"under {min_side} px on its shorter side")
    return "\n".join(lines)


def is_quiet(value) -> bool:
    """``quiet=auto``: quiet when stdout is not a terminal (piped or redirected)."""
    if str(value).lower() == "auto":
        return not sys.stdout.isatty()
    return str(value).lower() in ("true", "1", "yes")


def quiet_console_logs() -> None:
    """Only warnings and errors on the console; the run folder's log file keeps everything."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


def output_format(output: str, output_file) -> str:
    """``output``, or for ``output=table output_file=x.csv`` the format the file's suffix names (a file asked for is
    never silently not written)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if output != "table" or output_file in (None, ""):
        return output
    suffix = Path(str(output_file)).suffix.lstrip(".").lower()
    if suffix in OUTPUTS[1:]:
        return suffix
    raise ValueError(f"output_file={output_file} needs output=csv|json|jsonl (or a .csv/.json/.jsonl name)")


def infer(cfg: DictConfig, run_dir: Path, paths=()) -> list[dict]:
    output_file = cfg.get("output_file")
    fmt = output_format(cfg.output, output_file)
    to_stdout = fmt != "table" and str(output_file if output_file is not None else "-") in ("-", "")
    quiet = is_quiet(cfg.get("quiet", "auto"))
    if quiet:
        quiet_console_logs()
    rows, model = predict(cfg, paths, progress=not quiet)

    run_dir.mkdir(parents=True, exist_ok=True)
    write_rows(rows, "csv", run_dir / "predictions.csv")
    skipped_csv = run_dir / "skipped.csv"
    write_skipped_rows(rows, skipped_csv)
    text = summary(rows, model, skipped_csv, int(cfg.get("min_side", MIN_SIDE)))
    if to_stdout:
        write_rows(rows, fmt, sys.stdout)
        print(text, file=sys.stderr)
    else:
        print_predictions(rows, limit=cfg.get("print_limit"))
        if fmt != "table":
            write_rows(rows, fmt, Path(output_file))
            print(f"wrote {len(rows)} rows to {output_file}")
        print(text)
    errors = [r for r in rows if r["error"]]
    if len(errors) == len(rows):
        where = ", ".join(as_paths(cfg.get("path")) + as_paths(paths))
        raise NothingScoredError(f"none of the {len(rows)} inputs ({where[:200]}) could be scored"
                                 + (f"; first error: {errors[0]['path']}: {errors[0]['error']}" if errors else ""))
    return rows


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="infer")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from negate.errors import exit_on_user_error

    with exit_on_user_error():
        rows = infer(cfg, Path(HydraConfig.get().runtime.output_dir), CLI_PATHS)
    if any(r["error"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    from negate.entry import run

    run("infer", sys.argv[1:], main)
