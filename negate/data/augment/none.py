"""``kind: none``: no augmentation."""

from __future__ import annotations

from negate.plugins import AUGMENTATIONS


@AUGMENTATIONS.register("none")
class NoAugmentation:
    views = 0

    def view(self, seed: int) -> str:
        return "none"
