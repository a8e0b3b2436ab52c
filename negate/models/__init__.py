"""Deep models behind negate's learned features: image encoders, latent-diffusion autoencoders, hub access.

- :func:`negate.models.encoders.create_encoder` -> :class:`~negate.models.encoders.Encoder` (``encoder=<name>``)
- :func:`negate.models.autoencoders.create_autoencoder` -> :class:`~negate.models.autoencoders.Autoencoder`
  (``ae=<name>``)
- :class:`negate.models.hub.ModelUnavailableError`: raised at once when weights are missing offline

What a name means is its YAML in ``configs/encoder|ae/`` (registered in :data:`negate.plugins.ENCODERS` /
:data:`~negate.plugins.AUTOENCODERS`). The feature families built on these models live in :mod:`negate.features`
(:mod:`negate.features.deep` turns ``cfg.encoder`` / ``cfg.ae`` into them); nothing here imports features.
"""

from negate.models.autoencoders import Autoencoder, create_autoencoder, list_autoencoders
from negate.models.encoders import Encoder, create_encoder, list_encoders
from negate.models.hub import ModelUnavailableError

__all__ = [
    "Autoencoder",
    "Encoder",
    "ModelUnavailableError",
    "create_autoencoder",
    "create_encoder",
    "list_autoencoders",
    "list_encoders",
]
