"""The learned detector: a pretrained backbone fine-tuned end to end on native-resolution patches (Lightning
``Trainer.fit``), optionally with *aligned reconstructions* of the real training images as extra, content-matched
fakes. The fitted network is then an ``encoder`` (``name: finetuned``) whose pooled patch logits feed a classifier.
"""

# finetune keys added after weights and protocol rows were recorded: at these values they change nothing, so they stay
# out of the fit cache key and the recipe signature (both still match what was recorded before the keys existed)
NEUTRAL_DEFAULTS = {"patches_per_image": 1, "soup": 1}


def without_neutral_defaults(finetune: dict) -> dict:
    return {k: v for k, v in finetune.items() if k not in NEUTRAL_DEFAULTS or v != NEUTRAL_DEFAULTS[k]}


# finetune keys read only at inference: the fitted weights do not depend on them, so the fit cache key pins them to
# the values every recorded fit was keyed with (a run that only changes the inference grid reuses the weights)
INFERENCE_ONLY = {"grid": 16, "infer_batch_size": 64, "pool": "logit"}


def fit_relevant(finetune: dict) -> dict:
    """The part of a ``finetune`` config that the fitted weights depend on, as the fit cache key hashes it."""
    out = without_neutral_defaults(finetune)
    out.update(INFERENCE_ONLY)
    return out

