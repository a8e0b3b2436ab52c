"""Errors a user can fix (missing model, refused model folder, unwritable cache, bad data, config or input) end a
command with a one-line message on stderr and exit status 2 instead of a traceback. ``NEGATE_DEBUG=1`` shows the
traceback."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

USER_ERROR = 2


class InputError(ValueError):
    """The data or the paths given cannot be used (e.g. none of the images can be read)."""


def user_error_types() -> tuple[type[BaseException], ...]:
    from omegaconf.errors import MissingMandatoryValue

    from negate.cache import CacheWriteError
    from negate.inference import NothingScoredError
    from negate.model_folder import ModelFolderError
    from negate.models.hub import ModelUnavailableError

    return (CacheWriteError, NothingScoredError, ModelFolderError, ModelUnavailableError, FileNotFoundError,
            NotADirectoryError, ValueError, MissingMandatoryValue)


def one_line(err: BaseException) -> str:
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(err, MissingMandatoryValue) and getattr(err, "full_key", None):
        return f"{err.full_key} has no value: pass {err.full_key}=..."
    return " ".join(str(err).split()) or type(err).__name__


@contextmanager
def exit_on_user_error():
    try:
        yield
    except user_error_types() as err:
        if os.environ.get("NEGATE_DEBUG"):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(USER_ERROR)
