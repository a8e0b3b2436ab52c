"""``kind: random_views``: seeded random crop / downscale / blur / JPEG-WebP views (:func:`negate.data.perturb.random_view`)."""

from __future__ import annotations

from negate.data.perturb import AugmentConfig, _as_config, random_view
from negate.plugins import AUGMENTATIONS


@AUGMENTATIONS.register("random_views")
class RandomViews:
    def __init__(self, views: int = 2, **probabilities):
        self.views = int(views)
        self.config: AugmentConfig = _as_config(probabilities)  # validates names, probabilities and ranges

    def view(self, seed: int) -> str:
        return random_view(seed, self.config)
