"""Score-level ensembles of named recipes (``ensemble.members: [default, finetuned_no_aligned]``).

Each member is a recipe of ``configs/experiment`` fitted on the same training and validation records; the ensemble's
score is the mean of the members' logits, with fixed equal weights (nothing is fitted on top, so no extra data is
needed and nothing can overfit), and its threshold is chosen on the validation split like any recipe's. Members
disagree in useful ways: a frozen ImageNet encoder reads content and global statistics, a fine-tuned network local
traces (their out-of-fold scores correlate at ~0.5 under the family protocol).

An ensemble behaves like one recipe everywhere: :class:`EnsembleRunner` is a feature runner whose table is the
members' tables side by side (each member with its own normalisation and cache), :class:`EnsembleDetector` splits
those columns back and averages the members' logits. Its model folder holds one complete, checksummed model folder
per member (``member_<name>/``) and pins each member's ``checksums.sha256`` in its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf

from negate.data.records import ImageRecord
from negate.extract import FeatureTable
from negate.pipeline import FeatureRunner

# the keys a named recipe sets; everything else (data, paths, seed, split, threshold, cv, ...) comes from the caller
RECIPE_KEYS = ("feature", "encoder", "ae", "classifier", "finetune", "aligned", "patches", "augment")
MEMBERS_SHA256 = "members.sha256"  # sha256 of each member folder's checksums.sha256
COMBINES = ("mean_logit", "mean_z", "max_z", "stack_z")
REDUCE_OF = {"mean_logit": "mean", "mean_z": "mean", "max_z": "max", "stack_z": "stack"}
STANDARDISED_COMBINE = {"mean": "mean_z", "max": "max_z", "stack": "stack_z"}  # the combine a scaled detector saves


def ensemble_members(cfg: DictConfig) -> list[str]:
    block = cfg.get("ensemble")
    members = list(block.get("members") or []) if block else []
    if block and len(members) < 2:
        raise ValueError(f"ensemble.members needs at least two recipes of configs/experiment, got {members}")
    if len(set(members)) != len(members):
        raise ValueError(f"ensemble.members lists a recipe twice: {members}")
    return [str(m) for m in members]


def _compose_experiment(name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from negate.paths import CONFIG_DIR

    if not (Path(CONFIG_DIR) / "experiment" / f"{name}.yaml").is_file():
        raise ValueError(f"ensemble member {name!r} is not a recipe of configs/experiment")
    overrides = [f"experiment={name}", *overrides]
    if GlobalHydra.instance().is_initialized():  # inside a negate command: its config search path holds configs/
        return compose(config_name="train", overrides=overrides)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def member_cfg(cfg: DictConfig, name: str) -> DictConfig:
    """The caller's config with the recipe keys (and ``data.reencode``) of experiment ``name``, composed with the
    overrides listed for it under ``ensemble.overrides.<name>`` (e.g. ``[finetune.max_epochs=20]``). ``format_match``
    is the caller's unless the member's overrides set it."""
    overrides = (cfg.ensemble.get("overrides") or {}).get(name) or []
    recipe = _compose_experiment(name, [str(o) for o in overrides])
    out = OmegaConf.to_container(cfg, resolve=True)
    out.pop("ensemble", None)
    for key in RECIPE_KEYS:
        out[key] = OmegaConf.to_container(recipe[key], resolve=True) if recipe.get(key) is not None else None
    out["data"]["reencode"] = recipe.data.get("reencode")
    if any(str(o).lstrip("+~").startswith("format_match") for o in overrides):  # else the caller's applies to all
        out["format_match"] = OmegaConf.to_container(recipe.format_match, resolve=True)
    return OmegaConf.create(out)


def ensemble_combine(cfg: DictConfig) -> str:
    """``mean_logit``: the members' logits averaged as they are. ``mean_z``: each member's logit first standardised by
    the mean and standard deviation of its logits on the validation split's reals, so a member whose scale drifts
    between fits (a fine-tuned network) neither dominates nor fades. ``max_z``: the highest of those standardised
    logits, so one member that sees a trace the others miss (a local edit) decides. ``stack_z``: a logistic regression
    on those standardised logits, fitted on the validation split (the members' weights learned, not fixed)."""
    combine = str((cfg.get("ensemble") or {}).get("combine") or "mean_logit")
    if combine not in COMBINES:
        raise ValueError(f"ensemble.combine must be one of {COMBINES}, got {combine!r}")
    return combine


COMBINE_TEXT = {
    "mean_logit": "mean of the members' logits (equal weights)",
    "mean_z": "mean of the members' logits, each standardised by its validation reals (equal weights)",
    "max_z": "highest of the members' logits, each standardised by its validation reals",
    "stack_z": "weighted sum of the members' logits, each standardised by its validation reals, the weights fitted on "
               "the validation split",
}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class EnsembleRunner:
    """The members' feature runners side by side: a record has a row when every member has one."""

    def __init__(self, members: dict[str, object], combine: str = "mean_logit"):
        self.members = members  # name -> FeatureRunner
        self.pipeline = {"ensemble": {"members": list(members), "combine": combine}}
        self.families = [f for r in members.values() for f in r.families]

    @property
    def names(self) -> list[str]:
        return [f"{m}/{n}" for m, r in self.members.items() for n in r.names]

    @property
    def widths(self) -> list[int]:
        return [len(r.names) for r in self.members.values()]

    @property
    def unreadable(self) -> dict[str, str]:
        return {k: v for r in self.members.values() for k, v in r.unreadable.items()}

    def hashes(self, records: list[ImageRecord]) -> list[str | None]:
        return next(iter(self.members.values())).hashes(records)

    def features(self, records: list[ImageRecord], attack: str | list[str] = "") -> tuple[list[int], FeatureTable]:
        parts = [r.features(records, attack) for r in self.members.values()]
        kept = sorted(set.intersection(*(set(k) for k, _ in parts)))
        blocks = []
        for member_kept, table in parts:
            row = {i: j for j, i in enumerate(member_kept)}
            blocks.append(table.X[[row[i] for i in kept]] if kept else table.X[:0])
        failed = {k: v for _, t in parts for k, v in t.failed.items()}
        keys = [records[i].path for i in kept]
        return kept, FeatureTable(keys, np.hstack(blocks), self.names, failed)

    # the single runner's rule (hashes, unreadable files, the table's failures), which this runner's attributes serve
    failures = FeatureRunner.failures


class EnsembleDetector:
    """Mean logit of the member detectors, each on its own block of columns; with ``scales`` (member -> (centre,
    scale), combine ``mean_z``) each member's logit is standardised first; ``reduce="max"`` (combine ``max_z``, with
    scales) takes the highest standardised logit instead of the mean, ``reduce="stack"`` (combine ``stack_z``) their
    weighted sum with ``weights`` (member -> weight, and a bias) fitted on the validation split."""

    kind = "ensemble"

    def __init__(self, members: dict[str, object], widths: list[int],
                 scales: dict[str, tuple[float, float]] | None = None, reduce: str = "mean",
                 weights: dict[str, float] | None = None):
        if reduce not in ("mean", "max", "stack") or (reduce != "mean" and not scales) \
                or ((reduce == "stack") != bool(weights)):
            raise ValueError(f"ensemble reduce must be mean, max with scales, or stack with scales and weights; "
                             f"got {reduce!r}")
        self.reduce = reduce
        self.weights = dict(weights) if weights else None
        self.members = members  # name -> fitted detector
        self.widths = widths
        self.n_features_ = int(sum(widths))
        self.scales = dict(scales) if scales else None
        if self.scales is not None and set(self.scales) != set(members):
            raise ValueError(f"ensemble scales name {sorted(self.scales)}, members are {sorted(members)}")

    def member_logits(self, X) -> dict[str, np.ndarray]:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_:
            raise ValueError(f"expected {self.n_features_} ensemble feature columns, got shape {X.shape}")
        bounds = np.cumsum([0, *self.widths])
        return {name: _logit(d.predict_proba(X[:, a:b])[:, 1])
                for (name, d), a, b in zip(self.members.items(), bounds, bounds[1:])}

    def predict_proba(self, X) -> np.ndarray:
        logits = self.member_logits(X)
        if self.scales is not None:
            logits = {m: (z - self.scales[m][0]) / self.scales[m][1] for m, z in logits.items()}
        if self.reduce == "stack":
            z = self.weights.get("bias", 0.0) + sum(self.weights[m] * v for m, v in logits.items())
        else:
            z = (np.max if self.reduce == "max" else np.mean)(list(logits.values()), axis=0)
        p = 1 / (1 + np.exp(-z))
        return np.column_stack([1 - p, p])

    def params(self) -> dict:
        combine = "mean_logit" if self.scales is None else STANDARDISED_COMBINE[self.reduce]
        return {"members": list(self.members), "combine": combine}

    def state(self) -> dict:
        state = {"n_features": self.n_features_, "widths": list(self.widths)}
        if self.scales is not None:
            state["scales"] = {m: [float(c), float(s)] for m, (c, s) in self.scales.items()}
        if self.weights is not None:
            state["weights"] = {m: float(w) for m, w in self.weights.items()}
        return state

    def save(self, folder: Path) -> list[str]:
        """Pin each member folder (already written) by the sha256 of its ``checksums.sha256``."""
        from negate.model_folder import CHECKSUMS, _sha256

        sums = {member_folder(folder, m).name: _sha256(member_folder(folder, m) / CHECKSUMS) for m in self.members}
        (Path(folder) / MEMBERS_SHA256).write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
        return [MEMBERS_SHA256]


@dataclass
class FittedMember:
    name: str
    recipe: object  # FittedRecipe
    cfg: DictConfig


def fit_ensemble(cfg: DictConfig, train: list[ImageRecord], val: list[ImageRecord], work_dir: str | Path,
                 base_view: str = ""):
    """Fit every member on ``train``/``val``; a :class:`~negate.recipe.FittedRecipe` whose runner and detector are
    the ensemble's, threshold chosen on ``val``. ``.members`` keeps the fitted members (for saving)."""
    from negate.protocol import fit_threshold
    from negate.recipe import FittedRecipe, compose_view, fit_recipe, threshold_view_scores

    members = []
    for name in ensemble_members(cfg):
        mcfg = member_cfg(cfg, name)
        members.append(FittedMember(name, fit_recipe(mcfg, train, val, Path(work_dir) / name, base_view), mcfg))
    combine = ensemble_combine(cfg)
    runner = EnsembleRunner({m.name: m.recipe.runner for m in members}, combine)
    detector = EnsembleDetector({m.name: m.recipe.detector for m in members}, runner.widths)
    fitted = FittedRecipe(runner, detector, 0.5, runner.pipeline, base_view)
    kept, table = runner.features(val, compose_view("", base_view))
    y_val = np.array([val[i].label for i in kept], dtype=int)
    if combine != "mean_logit":
        logits = detector.member_logits(table.X) if kept else {}
        detector.scales = real_logit_scales(logits, y_val)
        detector.reduce = REDUCE_OF[combine]
        if combine == "stack_z":
            detector.weights = stack_weights(logits, y_val, detector.scales)
    p_val = detector.predict_proba(table.X)[:, 1] if kept else np.zeros(0)
    fitted.threshold, fitted.uncertain = fit_threshold(cfg, y_val, p_val, threshold_view_scores(cfg, fitted, val))
    fitted.members = members
    return fitted


def stack_weights(logits: dict[str, np.ndarray], y: np.ndarray, scales: dict) -> dict[str, float]:
    """Member weights and a bias: a class-balanced logistic regression on the standardised validation logits."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        raise ValueError("ensemble.combine=stack_z needs both classes in the validation split")
    names = list(logits)
    Z = np.column_stack([(logits[m] - scales[m][0]) / scales[m][1] for m in names])
    fit = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(Z, y)
    return {**{m: float(w) for m, w in zip(names, fit.coef_[0])}, "bias": float(fit.intercept_[0])}


def real_logit_scales(logits: dict[str, np.ndarray], y: np.ndarray) -> dict[str, tuple[float, float]]:
    """Per member, the mean and standard deviation of its logits on the reals of ``y`` (the validation split)."""
    real = np.asarray(y) == 0
    if real.sum() < 2:
        raise ValueError("ensemble.combine=mean_z needs at least two validation reals to set each member's scale")
    return {m: (float(z[real].mean()), float(max(z[real].std(), 1e-6))) for m, z in logits.items()}


# ---------------------------------------------------------------- model folders


def is_ensemble_folder(folder: str | Path) -> bool:
    return (Path(folder) / MEMBERS_SHA256).is_file()


def member_folder(folder: Path, name: str) -> Path:
    return Path(folder) / f"member_{name}"


def save_ensemble(folder: Path, fitted, save_member, threshold: float, uncertain: tuple[float, float],
                  metrics: dict, card: dict, extra_files: dict[str, str] | None = None,
                  operating_points: dict | None = None) -> Path:
    """Write each member with ``save_member(member_dir, fitted_member)`` (a complete model folder), then the ensemble
    folder itself like any model folder (:func:`negate.model_folder.save_model`), its detector pinning the members."""
    from negate.model_folder import save_model

    for m in fitted.members:
        member_folder(folder, m.name).mkdir()
        save_member(member_folder(folder, m.name), m)
    return save_model(Path(folder), fitted.detector, fitted.pipeline, fitted.runner.names, threshold, uncertain,
                      metrics, card, extra_files, operating_points=operating_points)


def load_ensemble(folder: Path, load_member):
    """Verify and load an ensemble folder. ``load_member(path) -> (LoadedModel, families)`` loads one member folder
    (verifying its own checksums). Returns the ensemble's LoadedModel and, in place of families, the members'."""
    from negate.model_folder import (CHECKSUMS, MODEL_JSON, PIPELINE_YAML, LoadedModel, ModelFolderError, _sha256,
                                     verify_checksums)

    folder = Path(folder)
    sums = verify_checksums(folder)
    if MEMBERS_SHA256 not in sums:
        raise ModelFolderError(f"{folder}: {MEMBERS_SHA256} is not covered by its checksums")
    info = json.loads((folder / MODEL_JSON).read_text())
    pipeline = yaml.safe_load((folder / PIPELINE_YAML).read_text())
    names = list((pipeline.get("ensemble") or {}).get("members") or [])
    pinned = {}
    for line in (folder / MEMBERS_SHA256).read_text().splitlines():
        digest, _, name = line.partition("  ")
        pinned[name] = digest
    members, detectors, widths = {}, {}, []
    for name in names:
        path = member_folder(folder, name)
        if pinned.get(path.name) is None or not (path / CHECKSUMS).is_file() \
                or _sha256(path / CHECKSUMS) != pinned[path.name]:
            raise ModelFolderError(f"{folder}: member {name!r} is missing or does not match {MEMBERS_SHA256} "
                                   "(tampered or truncated); refusing to load")
        model, families = load_member(path)
        members[name] = (model, families)
        detectors[name] = model.detector
        widths.append(len(model.feature_names))
    if len(members) < 2:
        raise ModelFolderError(f"{folder}: an ensemble needs at least two members, found {names}")
    saved = info.get("detector") or {}
    state = saved.get("state", {})
    reduce = REDUCE_OF.get(saved.get("params", {}).get("combine", "mean_logit"), "mean")
    scales = {m: tuple(v) for m, v in state["scales"].items()} if state.get("scales") else None
    detector = EnsembleDetector(detectors, widths, scales, reduce, state.get("weights"))
    feature_names = [f"{m}/{n}" for m, (model, _) in members.items() for n in model.feature_names]
    model = LoadedModel(folder, detector, pipeline, feature_names, info["threshold"], tuple(info["uncertain"]), info)
    return model, members


def make_runner(pipeline: dict, cfg: DictConfig, families, progress: bool = True):
    """The feature runner of a loaded model: a FeatureRunner, or an EnsembleRunner when ``families`` holds the
    members of an ensemble folder (``{name: (LoadedModel, families)}``)."""
    if "ensemble" in pipeline:
        return EnsembleRunner({name: FeatureRunner(m.pipeline, cfg, fams, progress=progress)
                               for name, (m, fams) in families.items()}, pipeline["ensemble"].get("combine", "mean_logit"))
    return FeatureRunner(pipeline, cfg, families, progress=progress)
