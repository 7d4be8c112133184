"""Finding official GLIP weight files: local paths, the local cache, or the Hugging Face Hub.

The official checkpoints are mirrored in the Hugging Face repository ``GLIPModel/GLIP`` under their
original file names. `resolve_weights` turns a path or one of those names into a local file,
downloading into `cache_dir()` only when needed and never at import time.

Example:
    >>> path = resolve_weights("glip_tiny_model_o365_goldg.pth")  # doctest: +SKIP
    >>> OFFICIAL_WEIGHTS[path.name]  # doctest: +SKIP
    'glip-t'
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

HF_REPO_ID = "GLIPModel/GLIP"
HF_REPO_URL = f"https://huggingface.co/{HF_REPO_ID}"

# Official file name -> name of the model config that reads it.
OFFICIAL_WEIGHTS: dict[str, str] = {
    "glip_a_tiny_o365.pth": "glip-t-a",
    "glip_tiny_model_o365.pth": "glip-t",
    "glip_tiny_model_o365_goldg.pth": "glip-t",
    "glip_tiny_model_o365_goldg_cc_sbu.pth": "glip-t",
    "glip_large_model.pth": "glip-l",
}

_TRUE_VALUES = ("1", "true", "yes", "on")
PROBE_TIMEOUT_S = 10.0  # seconds the first (metadata) request to the Hub may take


class WeightsNotFoundError(FileNotFoundError):
    """A weight file is neither on disk nor obtainable; the message says where to place it."""


def cache_dir() -> Path:
    """Directory holding downloaded weights: ``$GLIP_CACHE`` if set, else ``~/.cache/glip``."""
    configured = os.environ.get("GLIP_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "glip"


def _env_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``GLIP_OFFLINE`` asks for no network access."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE_VALUES
        for var in ("HF_HUB_OFFLINE", "GLIP_OFFLINE")
    )


def _download_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the Hub could not deliver the file" (network, HTTP, missing entry).

    Socket errors and most Hub errors (``LocalEntryNotFoundError``, ``HfHubHTTPError``) derive from
    ``OSError``; the HTTP clients' own errors and ``EntryNotFoundError`` do not, so they are added
    when their packages are installed (huggingface_hub has used requests, httpx and httpx2).
    """
    import importlib

    errors: list[type[BaseException]] = [OSError]
    for module, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"), ("requests", "RequestException"),
                         ("huggingface_hub.errors", "EntryNotFoundError")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _placement_hint(name: str, target: Path) -> str:
    """The sentence telling the user exactly which file to put where."""
    return f"place {name} (from {HF_REPO_URL}) at {target}, or pass --weights PATH"


def _download(name: str, directory: Path) -> Path:
    """Fetch one official file from the Hub into ``directory``; failures -> WeightsNotFoundError.

    A single request for the file's metadata comes first, without retries: when the Hub cannot be
    reached (no network, a firewall), the answer is one error at once instead of the minute of
    retries (and retry warnings) that ``hf_hub_download`` spends on its own metadata request.
    """
    # Imported lazily: no network code at import time.
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    target = directory / name
    logger.info("downloading %s from %s into %s", name, HF_REPO_URL, directory)
    try:
        get_hf_file_metadata(hf_hub_url(HF_REPO_ID, name), timeout=PROBE_TIMEOUT_S)
        directory.mkdir(parents=True, exist_ok=True)
        downloaded = hf_hub_download(repo_id=HF_REPO_ID, filename=name, local_dir=directory)
    except _download_errors() as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
        raise WeightsNotFoundError(
            f"could not download {name} from {HF_REPO_URL} ({type(exc).__name__}: {reason}); "
            + _placement_hint(name, target)
        ) from exc
    return Path(downloaded)


def resolve_weights(name_or_path: str | os.PathLike, offline: bool | None = None) -> Path:
    """Return a local path to a weight file, downloading an official one if needed.

    Args:
        name_or_path: an existing file (returned as is), or an official file name such as
            ``"glip_tiny_model_o365_goldg.pth"`` (see `OFFICIAL_WEIGHTS`), looked up in
            `cache_dir()`.
        offline: never touch the network. ``None`` reads ``HF_HUB_OFFLINE`` / ``GLIP_OFFLINE``.

    Returns:
        Path of the weight file on disk.

    Raises:
        WeightsNotFoundError: the path does not exist and is not an official name (the message
            lists the official names), or the official file is not cached and cannot be downloaded
            (offline or network failure; the message gives the exact target path).
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise WeightsNotFoundError(f"{path} is a directory; pass the weight file inside it")
    name = os.fspath(name_or_path)
    if name not in OFFICIAL_WEIGHTS:
        known = ", ".join(OFFICIAL_WEIGHTS)
        raise WeightsNotFoundError(
            f"weights {name!r}: no such file and not an official GLIP weight name; "
            f"pass an existing path or one of: {known}"
        )
    directory = cache_dir()
    target = directory / name
    if target.is_file():
        logger.debug("using cached weights %s", target)
        return target
    if offline is None:
        offline = _env_offline()
    if offline:
        raise WeightsNotFoundError(
            f"{name} is not in the cache and downloads are disabled (offline); "
            + _placement_hint(name, target)
        )
    return _download(name, directory)
