"""Fetch model files through the normal Hugging Face cache, failing fast and clearly when they cannot be had.

Every deep model in negate loads its weights through here. A file already in the cache (``HF_HOME``) is used as
is; otherwise it is downloaded, unless the hub is switched off (``HF_HUB_OFFLINE=1``) or unreachable. In those
cases :class:`ModelUnavailableError` is raised at once, naming the repository and how to get it: huggingface_hub's
own retries would otherwise spend ~20 s per file before giving up on a machine without network.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from urllib.parse import urlparse

_TRUTHY = {"1", "true", "yes", "on"}


class ModelUnavailableError(RuntimeError):
    """Weights (or code) a model needs are not available here; the message says how to get them."""

    def __init__(self, repo_id: str, reason: str, *, gated: bool = False, subfolder: str | None = None, hint: str = ""):
        self.repo_id = repo_id
        self.reason = reason
        self.gated = gated
        include = f" --include '{subfolder}/*'" if subfolder else ""
        lines = [
            f"model {repo_id!r} is not available: {reason}.",
            hint
            or (
                f"Get it with `hf download {repo_id}{include}` on a machine with internet access (it lands in the "
                "Hugging Face cache, HF_HOME, which can be copied here), then run again."
            ),
        ]
        if gated:
            lines.append(
                "This repository is gated: accept its licence on its model page, then authenticate with "
                "`hf auth login` or by exporting HF_TOKEN."
            )
        super().__init__(" ".join(line for line in lines if line))


def hub_offline() -> bool:
    """True when the hub is switched off by environment (read at call time, so tests may set it late)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY


@lru_cache(maxsize=1)
def _endpoint_reachable(timeout: float) -> bool:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_reachable(timeout: float = 0.8) -> bool:
    """One TCP connect to the hub endpoint (cached for the process); False means: do not try to download."""
    return not hub_offline() and _endpoint_reachable(timeout)


def _convert(err: Exception, repo_id: str, gated: bool, subfolder: str | None) -> ModelUnavailableError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if isinstance(err, GatedRepoError):
        reason = "access to this gated repository was refused"
        return ModelUnavailableError(repo_id, reason, gated=True, subfolder=subfolder)
    if isinstance(err, RepositoryNotFoundError):
        reason = "the repository was not found (or is private/gated and no token was given)"
        return ModelUnavailableError(repo_id, reason, gated=True, subfolder=subfolder)
    reason = f"download failed ({type(err).__name__}: {err})"
    return ModelUnavailableError(repo_id, reason, gated=gated, subfolder=subfolder)


def _unreachable_reason() -> str:
    return "it is not in the local Hugging Face cache and " + (
        "the hub is switched off (HF_HUB_OFFLINE=1)" if hub_offline() else "the hub cannot be reached"
    )


def fetch_file(
    repo_id: str, filename: str, *, subfolder: str | None = None, revision: str | None = None, gated: bool = False
) -> str:
    """Local path of ``filename`` in ``repo_id``: from the cache, else downloaded.

    Raises :class:`ModelUnavailableError` when neither is possible.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    kwargs = dict(repo_id=repo_id, filename=filename, subfolder=subfolder or None, revision=revision)
    try:
        return hf_hub_download(**kwargs, local_files_only=True)
    except LocalEntryNotFoundError:
        pass
    if not hub_reachable():
        raise ModelUnavailableError(repo_id, _unreachable_reason(), gated=gated, subfolder=subfolder)
    try:
        return hf_hub_download(**kwargs)
    except Exception as err:  # every hub/network failure becomes one clear error
        raise _convert(err, repo_id, gated, subfolder) from err


def fetch_snapshot(
    repo_id: str,
    *,
    subfolder: str | None = None,
    revision: str | None = None,
    gated: bool = False,
    patterns: list[str] | None = None,
) -> str:
    """Local directory holding ``repo_id`` (only ``subfolder`` / ``patterns`` of it): cached, else downloaded.

    Raises :class:`ModelUnavailableError` when neither is possible.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    allow = patterns or ([f"{subfolder}/*"] if subfolder else None)
    kwargs = dict(repo_id=repo_id, revision=revision, allow_patterns=allow)
    try:
        path = snapshot_download(**kwargs, local_files_only=True)
        if not subfolder or os.path.isdir(os.path.join(path, subfolder)):
            return path
    except (LocalEntryNotFoundError, OSError):
        pass
    if not hub_reachable():
        raise ModelUnavailableError(repo_id, _unreachable_reason(), gated=gated, subfolder=subfolder)
    try:
        return snapshot_download(**kwargs)
    except Exception as err:
        raise _convert(err, repo_id, gated, subfolder) from err
