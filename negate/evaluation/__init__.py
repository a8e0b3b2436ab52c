"""Evaluation building blocks: ``metrics`` (numbers on arrays), ``plots`` (PNG figures), ``report`` (report.md +
metrics.json + plots for one split) and ``tables`` (Markdown helpers). Import the submodules directly; this package
imports nothing so light scripts stay light."""
