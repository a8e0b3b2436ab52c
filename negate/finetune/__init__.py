"""The learned detector: a pretrained backbone fine-tuned end to end on native-resolution patches (Lightning
``Trainer.fit``), optionally with *aligned reconstructions* of the real training images as extra, content-matched
fakes. The fitted network is then an ``encoder`` (``name: finetuned``) whose pooled patch logits feed a classifier.
"""
