"""Feature families. Importing this package registers every family in ``FEATURE_REGISTRY``."""

from negate.features.base import FEATURE_REGISTRY, FeatureFamily, create_feature, list_features, register_feature
from negate.features import (  # noqa: F401  (import registers)
    dct,
    laplacian,
    lbp,
    npr,
    resize_crop,
    spectral,
    wavelet,
)

__all__ = ["FEATURE_REGISTRY", "FeatureFamily", "create_feature", "list_features", "register_feature"]
