"""Deep models behind negate's learned features: image encoders, latent-diffusion autoencoders, hub access.

- :func:`negate.models.encoders.create_encoder` -> :class:`~negate.models.encoders.Encoder` (``encoder=<name>``)
- :func:`negate.models.autoencoders.create_autoencoder` -> :class:`~negate.models.autoencoders.Autoencoder`
  (``ae=<name>``)
- :func:`negate.models.families.build_deep_families`: ``cfg.encoder`` / ``cfg.ae`` -> feature families
- :class:`negate.models.hub.ModelUnavailableError`: raised at once when weights are missing offline
"""

from negate.models.autoencoders import AE_REGISTRY, Autoencoder, create_autoencoder, list_autoencoders
from negate.models.encoders import ENCODER_REGISTRY, Encoder, create_encoder, list_encoders
from negate.models.hub import ModelUnavailableError

__all__ = [
    "AE_REGISTRY",
    "ENCODER_REGISTRY",
    "Autoencoder",
    "Encoder",
    "ModelUnavailableError",
    "create_autoencoder",
    "create_encoder",
    "list_autoencoders",
    "list_encoders",
]
