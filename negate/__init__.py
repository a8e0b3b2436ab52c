"""negate: tell AI-generated images from human-made ones."""

__version__ = "0.1.0"
