"""Training augmentations of the ``augment`` group: each module registers a policy under its ``augment.kind`` in
:data:`negate.plugins.AUGMENTATIONS`. A policy has ``views`` (extra views per training image) and ``view(seed)``,
a view spec (:mod:`negate.data.perturb`) drawn from the seed alone, so augmented features are cached like any view."""
