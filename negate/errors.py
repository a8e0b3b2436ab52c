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


class NothingScoredError(RuntimeError):
    """``negate infer``: no input could be scored."""


USER_ERRORS = (("negate.cache", "CacheWriteError"),
               ("negate.model_folder", "ModelFolderError"), ("negate.models.hub", "ModelUnavailableError"),
               ("omegaconf.errors", "MissingMandatoryValue"))


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the user can fix this". Taken from modules already imported: an exception of a
    module that was never imported cannot have been raised, and a typo should not pay for importing torch."""
    found = [getattr(sys.modules[name], attr) for name, attr in USER_ERRORS if name in sys.modules]
    return (FileNotFoundError, NotADirectoryError, ValueError, NothingScoredError, *found)


def one_line(err: BaseException) -> str:
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(err, MissingMandatoryValue) and getattr(err, "full_key", None):
        return f"{err.full_key} has no value: pass {err.full_key}=..."
    return " ".join(str(err).split()) or type(err).__name__


@contextmanager
def exit_on_user_error():
    try:
        yield
    except Exception as err:
        if os.environ.get("NEGATE_DEBUG") or not isinstance(err, user_error_types()):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(USER_ERROR)
