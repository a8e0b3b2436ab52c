"""From composed config to the pieces every command shares: records, feature families, views, features.

The *pipeline* is everything that decides the numbers a detector sees: feature families (handcrafted, encoder,
autoencoder), patch cutting and the data normalisation (``data.reencode``). It is saved with a model as
``pipeline.yaml`` so ``infer`` and ``evaluate`` rebuild exactly the features the model was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from negate.data.dataset import ExtractionItem, PatchConfig, make_key
from negate.data.index import hash_records
from negate.data.records import ImageRecord
from negate.extract import FeatureTable, extract_features, pooled_names
from negate.features.base import FeatureFamily
from negate.paths import SAMPLE_DIR, negate_home, unique_run_dir
from negate.plugins import DATA_SOURCES, FEATURES, has_target

log = logging.getLogger(__name__)

def sample_dir() -> str:
    return str(SAMPLE_DIR)


def register_resolvers() -> None:
    """``${negate_sample_dir:}``, ``${negate_home:}`` ($NEGATE_HOME) and ``${negate_unique_dir:BASE}`` (a new run
    folder ``BASE_<hex>``; cached per config, so a run and its sweep jobs resolve it once)."""
    if not OmegaConf.has_resolver("negate_sample_dir"):
        OmegaConf.register_new_resolver("negate_sample_dir", sample_dir)
    if not OmegaConf.has_resolver("negate_home"):
        OmegaConf.register_new_resolver("negate_home", lambda: str(negate_home()))
    if not OmegaConf.has_resolver("negate_unique_dir"):
        OmegaConf.register_new_resolver("negate_unique_dir", unique_run_dir, use_cache=True)


register_resolvers()


def load_records(data_cfg) -> tuple[list[ImageRecord], dict[str, str]]:
    """Records of the ``data`` group's source (``data.kind``: a name in :data:`negate.plugins.DATA_SOURCES`) and the
    paths skipped while scanning (with reasons)."""
    kind, path = data_cfg.get("kind"), data_cfg.get("path")
    if path in (None, "???"):
        raise ValueError(f"data={kind} needs data.path=...")
    try:
        source = DATA_SOURCES.get(kind)
    except KeyError as err:
        raise ValueError(err.args[0]) from None
    records, skipped = source(data_cfg)
    return records, dict(skipped)


def pipeline_from_cfg(cfg: DictConfig) -> dict:
    """The resolved, plain-dict part of the config that defines features (saved with the model)."""
    encoder = OmegaConf.to_container(cfg.encoder, resolve=True)
    if isinstance(encoder.get("families"), dict):  # a family set to null is off: the same recipe as leaving it out
        encoder["families"] = {k: v for k, v in encoder["families"].items() if v is not None}
    return {
        "feature": OmegaConf.to_container(cfg.feature, resolve=True) if cfg.get("feature") else {},
        "encoder": encoder,
        "ae": OmegaConf.to_container(cfg.ae, resolve=True),
        "patches": OmegaConf.to_container(cfg.patches, resolve=True),
        "reencode": reencode_view(cfg.data.get("reencode")),
        "max_pixels": int(cfg.data.get("max_pixels", 64_000_000)),
    }


def feature_options(name: str, spec) -> dict:
    """The options of ``feature.<name>``, checked: a model folder's ``pipeline.yaml`` is data, so a family is only
    ever looked up in the registry by name; a ``_target_`` (how older configs named the class) must name that
    registered family, and nested ``_target_`` entries are refused."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"feature {name!r}: expected a mapping of options, got {type(spec).__name__}")
    options = dict(spec)
    target = options.pop("_target_", None)
    if target is not None and FEATURES.name_of_target(str(target)) != name:
        raise ValueError(f"feature {name!r}: _target_ {target!r} is not a registered feature family")
    if any(has_target(v) for v in options.values()):
        raise ValueError(f"feature {name!r}: nested _target_ entries are not allowed")
    return options


def protocol_signature(cfg: DictConfig) -> str:
    """Hash of everything that defines a detector except its data: feature pipeline, augmentation, classifier and
    threshold rule. Equal signatures mean the same recipe, so protocol results measured once can be quoted."""
    from negate.cache import config_hash

    pipeline = pipeline_from_cfg(cfg)
    pipeline.pop("max_pixels", None)
    recipe = {
        "pipeline": pipeline,
        "augment": OmegaConf.to_container(cfg.augment, resolve=True),
        "classifier": {k: v for k, v in OmegaConf.to_container(cfg.classifier, resolve=True).items() if k != "n_jobs"},
        "threshold": {k: v for k, v in OmegaConf.to_container(cfg.threshold, resolve=True).items()
                      if k != "operating_points"},  # stored beside the default; they do not change what is measured
    }
    from negate.finetune import without_neutral_defaults

    for key in ("aligned", "finetune", "ensemble"):  # only when on, so signatures recorded before these existed still match
        value = cfg.get(key)
        if value and value.get("name", "on") != "none":
            recipe[key] = OmegaConf.to_container(value, resolve=True)
    from negate.data.format_match import format_match_share

    share = format_match_share(cfg)
    if share > 0.0:  # only when on, like the blocks above
        recipe["format_match"] = {"share": share}
    if "finetune" in recipe:
        recipe["finetune"] = without_neutral_defaults(recipe["finetune"])
    if not recipe["threshold"].get("views"):
        recipe["threshold"].pop("views", None)  # originals only, the rule before views existed: old signatures match
    if "ensemble" in recipe and recipe["ensemble"].get("combine", "mean_logit") == "mean_logit":
        recipe["ensemble"].pop("combine", None)  # the only rule before it was a choice: old signatures still match
    return config_hash(recipe)


def reencode_view(value) -> str:
    """``data.reencode``: none/""/null -> no normalisation; ``jpeg90`` (or ``reencode:jpeg90``) -> that view spec."""
    text = "" if value is None else str(value).strip()
    if text.lower() in ("", "none", "null", "false", "off"):
        return ""
    return text if ":" in text else f"reencode:{text}"


MODEL_DIR_TOKEN = "@model"  # in a saved pipeline: "the model folder this pipeline.yaml lies in"


def build_families(pipeline: dict, model_dir: str | None = None) -> list[FeatureFamily]:
    """The pipeline's feature families; ``model_dir`` resolves ``@model`` paths (fine-tuned weights)."""
    if pipeline["encoder"].get("weights_dir") == MODEL_DIR_TOKEN:
        if model_dir is None:
            raise ValueError("this pipeline loads weights from its model folder (@model); pass model_dir")
        pipeline = {**pipeline, "encoder": {**pipeline["encoder"], "weights_dir": str(model_dir)}}
    options = {name: feature_options(name, spec) for name, spec in pipeline["feature"].items()}
    families = [FEATURES.build(name, **opts) for name, opts in sorted(options.items())]
    if pipeline["encoder"].get("name", "none") != "none" or pipeline["ae"].get("name", "none") != "none":
        from negate.features.deep import build_deep_families

        families += build_deep_families(OmegaConf.create(pipeline["encoder"]), OmegaConf.create(pipeline["ae"]))
    return families


def feature_names(pipeline: dict, families: list[FeatureFamily] | None = None) -> list[str]:
    families = families if families is not None else build_families(pipeline)
    return [n for f in families for n in pooled_names(f)]


def compose_view(*specs: str) -> str:
    """Join view specs applied in order; the pipeline's own normalisation always comes last."""
    return "+".join(s for s in specs if s)


def quiet_lightning() -> None:
    """Extraction is not training: hide Lightning's accelerator banners and tips, keep its warnings and errors."""
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def stderr_progress_bar():
    """Lightning's progress bar, drawn on stderr: stdout carries results only (tables, CSV/JSON rows)."""
    import contextlib
    import sys

    from lightning.pytorch.callbacks import TQDMProgressBar

    class StderrProgressBar(TQDMProgressBar):
        def init_predict_tqdm(self):
            with contextlib.redirect_stdout(sys.stderr):  # Lightning hands tqdm sys.stdout
                return super().init_predict_tqdm()

    return StderrProgressBar()


def trainer_factory(trainer_cfg, extra_callbacks=(), progress: bool = True):
    """Callable building a Lightning Trainer from the ``trainer`` config group; ``progress=False`` hides the bar."""

    def make(callbacks):
        quiet_lightning()
        callbacks = [*callbacks, *extra_callbacks]
        if not progress:
            return instantiate(trainer_cfg, callbacks=callbacks, enable_progress_bar=False, _convert_="all")
        if trainer_cfg.get("enable_progress_bar", True):
            callbacks.append(stderr_progress_bar())
        return instantiate(trainer_cfg, callbacks=callbacks, _convert_="all")

    return make


class FeatureRunner:
    """Extracts features for records with one pipeline, any view, through the shared cache."""

    def __init__(self, pipeline: dict, cfg: DictConfig, families: list[FeatureFamily] | None = None,
                 progress: bool = True):
        self.pipeline = pipeline
        self.families = families if families is not None else build_families(pipeline)
        self.patches = PatchConfig(**pipeline["patches"])
        self.extract = partial(
            extract_features,
            families=self.families,
            patches=self.patches,
            cache_root=cfg.paths.cache_dir,
            trainer_factory=trainer_factory(cfg.trainer, progress=progress),
            batch_size=cfg.extract.batch_size,
            num_workers=cfg.extract.num_workers,
            max_pixels=pipeline["max_pixels"],
            shard_rows=cfg.extract.shard_rows,
            compile=cfg.extract.get("compile", False),
            compile_min_images=cfg.extract.get("compile_min_images", 2000),
        )
        self._hashes: dict[str, str | None] = {}
        self.unreadable: dict[str, str] = {}

    @property
    def names(self) -> list[str]:
        return feature_names(self.pipeline, self.families)

    def hashes(self, records: list[ImageRecord]) -> list[str | None]:
        todo = [r for r in records if r.path not in self._hashes]
        new, failed = hash_records(todo)
        self._hashes.update({r.path: h for r, h in zip(todo, new)})
        self.unreadable.update(failed)
        return [self._hashes[r.path] for r in records]

    def features(self, records: list[ImageRecord], attack: str | list[str] = "") -> tuple[list[int], FeatureTable]:
        """Feature rows for ``records`` seen through ``attack`` (one spec, or one per record), then the pipeline's
        normalisation. Returns the indices of the records that have a row (same order as ``table.X``) and the table.
        """
        attacks = [attack] * len(records) if isinstance(attack, str) else list(attack)
        views = [compose_view(a, self.pipeline["reencode"]) for a in attacks]
        hashes = self.hashes(records)
        keys = [None if h is None else make_key(h, v) for h, v in zip(hashes, views)]
        items = [ExtractionItem(r.path, k, v) for r, k, v in zip(records, keys, views) if k is not None]
        table = self.extract(items)
        row_of = {k: i for i, k in enumerate(table.keys)}
        kept = [i for i, k in enumerate(keys) if k is not None and k in row_of]
        order = [row_of[keys[i]] for i in kept]
        table.X = table.X[order]
        table.keys = [table.keys[j] for j in order]
        return kept, table

    def failures(self, records: list[ImageRecord], table: FeatureTable, kept: list[int]) -> list[tuple[str, str]]:
        """(path, reason) for every record without a feature row."""
        kept_set = set(kept)
        hashes = self.hashes(records)
        out = []
        for i, r in enumerate(records):
            if i in kept_set:
                continue
            reason = self.unreadable.get(r.path) or next(
                (v for k, v in table.failed.items() if hashes[i] and k.startswith(hashes[i])), "not extracted"
            )
            out.append((r.path, reason))
        return out
