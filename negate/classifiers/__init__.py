"""Detectors fitted on cached features: scikit-learn style ``fit`` / ``predict_proba``, saved without pickle."""

from negate.classifiers.base import Detector, load_detector
from negate.classifiers.logreg import LogRegDetector
from negate.classifiers.xgboost import XGBoostDetector
from negate.classifiers.zero_shot import ZeroShotDetector

__all__ = ["Detector", "LogRegDetector", "XGBoostDetector", "ZeroShotDetector", "load_detector"]
