"""Feature families, handcrafted and model-backed. Each module registers its family in
:data:`negate.plugins.FEATURES` (``@register_feature("<name>")``); the registry imports them all on first use."""

from negate.features.base import FeatureFamily, create_feature, list_features, register_feature

__all__ = ["FeatureFamily", "create_feature", "list_features", "register_feature"]
