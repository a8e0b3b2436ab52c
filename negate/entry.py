"""What every command does around its Hydra entry point: stop cleanly on SIGINT/SIGTERM, refuse misspelt overrides
before Hydra sees them (and before torch is imported, so a typo costs a fraction of a second), and end user errors
with one line on stderr and exit status 2 (see ``negate.errors``)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from importlib import import_module

from negate.errors import exit_on_user_error


def run(command: str, args: list[str], hydra_main: Callable[[], object] | None = None,
        before: Callable[[object], None] | None = None) -> None:
    """Run ``negate COMMAND args...``: ``hydra_main`` (a ``@hydra.main`` function; default ``negate.<command>.main``,
    imported once the overrides are checked). ``before(module)`` runs after that import (``infer`` hands over its
    paths there)."""
    from negate.overrides import check_overrides
    from negate.signals import Interrupted, install

    install()
    try:
        with exit_on_user_error():
            args = check_overrides(command, args)
        if hydra_main is None:
            module = import_module(f"negate.{command}")
            if before is not None:
                before(module)
            hydra_main = module.main
        sys.argv = [f"negate-{command}", *args]
        hydra_main()
    except Interrupted as stop:
        # the run is torn down and its files are whole; skip the interpreter's own teardown (seconds with torch
        # loaded), so the command ends within the promised 2 s
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(128 + stop.signum)
