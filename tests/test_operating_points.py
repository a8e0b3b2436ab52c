"""Named operating points: chosen on validation predictions by their own rule, stored beside the default threshold."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from negate.model_folder import LoadedModel, ModelFolderError
from negate.operating_points import at_operating_point, fit_operating_points, point_rules


def _cfg(points, views=()):
    return OmegaConf.create({"threshold": {"method": "fpr", "target_fpr": 0.01, "uncertain_margin": 0.1,
                                           "views": list(views), "operating_points": points}})


def test_each_point_bounds_the_fpr_of_the_validation_reals_by_its_own_target():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(200)].astype(int)
    p = np.r_[rng.uniform(0, 0.8, 200), rng.uniform(0.3, 1, 200)]
    points = fit_operating_points(_cfg({"balanced": {"target_fpr": 0.05}, "loose": {"target_fpr": 0.2}}), y, p)
    assert points["balanced"]["val_fpr"] <= 0.05 < points["loose"]["val_fpr"] <= 0.2
    assert points["loose"]["threshold"] < points["balanced"]["threshold"]
    assert points["loose"]["val_tpr"] > points["balanced"]["val_tpr"]
    lo, hi = points["balanced"]["uncertain"]
    assert lo < points["balanced"]["threshold"] < hi


def test_a_point_with_views_must_hold_on_each_view_too():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    shifted = (y, p + 0.3)  # a view under which every real scores higher
    cfg = _cfg({"plain": {"target_fpr": 0.0, "views": []}, "robust": {"target_fpr": 0.0, "views": ["jpeg:75"]}})
    points = fit_operating_points(cfg, y, p, {"jpeg:75": shifted})
    assert points["plain"]["threshold"] == pytest.approx(0.6)
    assert points["robust"]["threshold"] == pytest.approx(0.9)  # the lowest shifted fake above every shifted real
    assert "also seen through jpeg:75" in points["robust"]["rule"]
    with pytest.raises(ValueError, match="needs the validation split seen through"):
        fit_operating_points(cfg, y, p)


def test_missing_keys_take_the_default_rule_and_bad_names_are_refused():
    assert point_rules(_cfg({"x": None}, views=["downscale:0.5"])) == {"x": {"target_fpr": 0.01,
                                                                            "views": ["downscale:0.5"]}}
    for bad in ({"default": {}}, {"two words": {}}, {"x": {"fpr": 0.1}}):
        with pytest.raises(ValueError):
            point_rules(_cfg(bad))


def test_at_operating_point_switches_threshold_and_band_and_names_the_choices():
    model = LoadedModel("m", None, {}, [], 0.9, (0.85, 0.95),
                        {"operating_points": {"balanced": {"threshold": 0.5, "uncertain": [0.4, 0.6]}}})
    assert at_operating_point(model, "default") is model and at_operating_point(model, None) is model
    balanced = at_operating_point(model, "balanced")
    assert (balanced.threshold, balanced.uncertain) == (0.5, (0.4, 0.6))
    assert balanced.verdicts([0.7, 0.55, 0.3]) == ["synthetic", "uncertain", "human"]
    assert model.verdicts([0.7]) == ["human"]
    with pytest.raises(ModelFolderError, match="it has: default, balanced"):
        at_operating_point(model, "strict")
