"""What every command does around its Hydra entry point: stop cleanly on SIGINT/SIGTERM, refuse misspelt overrides
before Hydra sees them, and end user errors with one line on stderr and exit status 2 (see ``negate.errors``)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from negate.errors import exit_on_user_error


def run(command: str, hydra_main: Callable[[], object], args: list[str], config_name: str | None = None) -> None:
    """Run ``hydra_main`` (a ``@hydra.main`` function) as ``negate COMMAND args...``."""
    from negate.overrides import check_overrides
    from negate.signals import Interrupted, install

    install()
    try:
        with exit_on_user_error():
            args = check_overrides(command, args, config_name)
        sys.argv = [f"negate-{command}", *args]
        hydra_main()
    except Interrupted as stop:
        sys.exit(128 + stop.signum)
