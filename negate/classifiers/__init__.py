"""Detectors fitted on cached features: scikit-learn style ``fit`` / ``predict_proba``, saved without pickle.

Each module registers its detector (``@register_detector("<kind>")``); ``classifier=<option>`` selects one by the
``kind`` in ``configs/classifier/<option>.yaml``.
"""

from negate.classifiers.base import Detector, build_detector, load_detector, register_detector
from negate.classifiers.logreg import LogRegDetector
from negate.classifiers.xgboost import XGBoostDetector
from negate.classifiers.zero_shot import ZeroShotDetector

__all__ = ["Detector", "LogRegDetector", "XGBoostDetector", "ZeroShotDetector", "build_detector", "load_detector",
           "register_detector"]
