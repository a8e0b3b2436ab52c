"""Errors a user can fix (missing model, refused model folder, unwritable cache, bad data or config) end a command
with a one-line message and exit status 2 instead of a traceback. ``NEGATE_DEBUG=1`` shows the traceback."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


def user_error_types() -> tuple[type[BaseException], ...]:
    from negate.cache import CacheWriteError
    from negate.inference import NothingScoredError
    from negate.model_folder import ModelFolderError
    from negate.models.hub import ModelUnavailableError

    return (CacheWriteError, NothingScoredError, ModelFolderError, ModelUnavailableError, FileNotFoundError,
            NotADirectoryError, ValueError)


@contextmanager
def exit_on_user_error():
    try:
        yield
    except user_error_types() as err:
        if os.environ.get("NEGATE_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
