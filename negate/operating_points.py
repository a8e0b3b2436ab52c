"""Named operating points of a model: decision thresholds chosen on the same validation predictions by other rules.

A model folder's ``threshold`` and ``uncertain`` band are its default operating point (the recipe's ``threshold.*``
rule). ``model.json`` may also hold ``operating_points``: ``{name: {threshold, uncertain, rule, val_fpr, val_tpr}}``,
each chosen on the validation split by the rule ``threshold.operating_points.<name>`` gives (its own ``target_fpr``
and ``views``; method and uncertain margin as the default's). ``negate infer operating_point=NAME`` scores with one of
them, so a user can trade more AI images caught for more real photos flagged without retraining; the validation
FPR and TPR stored beside each say what that trade was on the validation split.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

DEFAULT = "default"


def point_rules(cfg: DictConfig) -> dict[str, dict]:
    """``{name: {"target_fpr", "views"}}`` of ``threshold.operating_points`` (missing keys: the default rule's)."""
    rules = OmegaConf.to_container(cfg.threshold.get("operating_points") or {}, resolve=True)
    out = {}
    for name, rule in rules.items():
        if name == DEFAULT or not str(name).isidentifier():
            raise ValueError(f"threshold.operating_points: {name!r} is not a usable name (a word other than "
                             f"{DEFAULT!r})")
        rule = dict(rule or {})
        unknown = set(rule) - {"target_fpr", "views"}
        if unknown:
            raise ValueError(f"threshold.operating_points.{name}: unknown keys {sorted(unknown)}; known: target_fpr, "
                             "views")
        out[str(name)] = {"target_fpr": float(rule.get("target_fpr", cfg.threshold.target_fpr)),
                          "views": [str(v) for v in (rule.get("views", cfg.threshold.get("views")) or [])]}
    return out


def rule_text(method: str, target_fpr: float, views: list[str]) -> str:
    seen = f", also seen through {', '.join(views)}" if views else ""
    return f"{method} (target FPR {target_fpr}) on the validation split{seen}"


def point_entry(threshold: float, band: tuple[float, float], rule: str, y_val, p_val) -> dict:
    """One stored operating point, with the FPR and TPR it gave on the validation originals."""
    y_val, p_val = np.asarray(y_val), np.asarray(p_val, dtype=np.float64)
    flagged = p_val >= threshold
    rate = (lambda mask: float(flagged[mask].mean()) if mask.any() else float("nan"))
    return {"threshold": float(threshold), "uncertain": [float(band[0]), float(band[1])], "rule": rule,
            "val_fpr": rate(y_val == 0), "val_tpr": rate(y_val == 1)}


def fit_operating_points(cfg: DictConfig, y_val, p_val, view_scores: dict | None = None) -> dict[str, dict]:
    """Every ``threshold.operating_points`` rule applied to the validation predictions (``view_scores``:
    ``{view: (y, p)}`` as for :func:`negate.protocol.fit_threshold`, holding at least each rule's views)."""
    from negate.protocol.thresholds import choose_threshold, uncertain_band

    method = cfg.threshold.method
    out = {}
    for name, rule in point_rules(cfg).items():
        missing = [v for v in rule["views"] if v not in (view_scores or {})]
        if missing:
            raise ValueError(f"operating point {name!r} needs the validation split seen through {missing}")
        scored = [(y_val, p_val)] + [view_scores[v] for v in rule["views"]]
        threshold = max(choose_threshold(y, p, method, rule["target_fpr"]) for y, p in scored)
        band = uncertain_band(threshold, cfg.threshold.uncertain_margin)
        out[name] = point_entry(threshold, band, rule_text(method, rule["target_fpr"], rule["views"]), y_val, p_val)
    return out


def fit_recipe_points(cfg: DictConfig, recipe, val_records, y_val, p_val) -> dict[str, dict]:
    """:func:`fit_operating_points` for a fitted recipe (:class:`negate.recipe.FittedRecipe`): the validation records
    are scored through the views the rules name."""
    from negate.recipe import threshold_view_scores

    views = sorted({v for rule in point_rules(cfg).values() for v in rule["views"]})
    scores = threshold_view_scores(cfg, recipe, val_records, views) if views else {}
    return fit_operating_points(cfg, y_val, p_val, scores)


def point_names(info: dict) -> list[str]:
    return [DEFAULT, *sorted(info.get("operating_points") or {})]


def at_operating_point(model, name: str | None):
    """``model`` (a :class:`negate.model_folder.LoadedModel`) deciding at the named operating point."""
    from negate.model_folder import ModelFolderError

    if name in (None, "", DEFAULT):
        return model
    points = model.info.get("operating_points") or {}
    if name not in points:
        raise ModelFolderError(f"{model.folder} has no operating point {name!r}; it has: "
                               f"{', '.join(point_names(model.info))}")
    point = points[name]
    return replace(model, threshold=float(point["threshold"]), uncertain=tuple(point["uncertain"]),
                   info={**model.info, "operating_point": name})


def card_lines(points: dict[str, dict]) -> list[str]:
    """Model-card lines, one per stored operating point."""
    return [f"- operating point `{name}` (`negate infer operating_point={name}`): threshold {p['threshold']:.4f} "
            f"(chosen on {p['rule']}); uncertain band [{p['uncertain'][0]:.4f}, {p['uncertain'][1]:.4f}); on the "
            f"validation originals FPR {p['val_fpr']:.3f}, TPR {p['val_tpr']:.3f}"
            + (f"; {p['note']}" if p.get("note") else "") for name, p in sorted(points.items())]


def add_operating_point(folder: str | Path, name: str, entry: dict) -> None:
    """Store ``entry`` as operating point ``name`` of an existing model folder: ``model.json``, its checksum and the
    card's operating-point lines are rewritten; nothing else changes."""
    from negate.model_folder import CARD, CHECKSUMS, MODEL_JSON, _sha256, verify_checksums

    folder = Path(folder)
    verify_checksums(folder)
    info = json.loads((folder / MODEL_JSON).read_text())
    info.setdefault("operating_points", {})[name] = entry
    (folder / MODEL_JSON).write_text(json.dumps(info, indent=1, sort_keys=True))
    sums = (folder / CHECKSUMS).read_text().splitlines()
    digest = _sha256(folder / MODEL_JSON)
    (folder / CHECKSUMS).write_text("".join((f"{digest}  {MODEL_JSON}" if line.endswith(f"  {MODEL_JSON}") else line)
                                            + "\n" for line in sums))
    card = (folder / CARD).read_text().splitlines()
    card = [line for line in card if not line.startswith("- operating point `")]
    at = next(i for i, line in enumerate(card) if line.startswith("- decision threshold:")) + 1
    card[at:at] = card_lines(info["operating_points"])
    card = [f"| {MODEL_JSON} | `{digest}` |" if line.startswith(f"| {MODEL_JSON} |") else line for line in card]
    (folder / CARD).write_text("\n".join(card) + "\n")
