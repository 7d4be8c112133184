"""Tests of glip.hub: cache lookup, offline errors, and the (monkeypatched) download path."""

from __future__ import annotations

from pathlib import Path

import httpx
import huggingface_hub
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from glip import hub
from glip.hub import OFFICIAL_WEIGHTS, WeightsNotFoundError, cache_dir, resolve_weights

NAME = "glip_tiny_model_o365_goldg.pth"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the cache at a temporary folder, clear offline switches, and forbid real downloads."""
    monkeypatch.setenv("GLIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("GLIP_OFFLINE", raising=False)

    def no_network(*args: object, **kwargs: object) -> str:
        raise AssertionError(f"test tried to reach the network: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", no_network)
    return tmp_path / "cache"


@pytest.fixture
def reachable_hub(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Hub's metadata request answers (the URLs asked for are recorded)."""
    asked: list[str] = []
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kwargs: asked.append(url))
    return asked


def test_official_names_map_to_configs() -> None:
    assert OFFICIAL_WEIGHTS == {
        "glip_a_tiny_o365.pth": "glip-t-a",
        "glip_tiny_model_o365.pth": "glip-t",
        "glip_tiny_model_o365_goldg.pth": "glip-t",
        "glip_tiny_model_o365_goldg_cc_sbu.pth": "glip-t",
        "glip_large_model.pth": "glip-l",
    }


def test_cache_dir_env_and_default(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == isolated_cache
    monkeypatch.delenv("GLIP_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "glip"


def test_existing_path_returned_as_is(tmp_path: Path) -> None:
    weights = tmp_path / "my_weights.pth"
    weights.write_bytes(b"x")
    assert resolve_weights(str(weights)) == weights
    assert resolve_weights(weights) == weights


def test_cached_official_file_needs_no_network(isolated_cache: Path) -> None:
    isolated_cache.mkdir(parents=True)
    (isolated_cache / NAME).write_bytes(b"x")
    assert resolve_weights(NAME) == isolated_cache / NAME


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "GLIP_OFFLINE"])
def test_offline_env_error_names_target(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(NAME)
    message = str(info.value)
    assert str(isolated_cache / NAME) in message
    assert "https://huggingface.co/GLIPModel/GLIP" in message
    assert "--weights PATH" in message


def test_offline_argument_error(isolated_cache: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="offline"):
        resolve_weights("glip_large_model.pth", offline=True)


def test_unknown_name_lists_official_names() -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("glip_huge_model.pth")
    message = str(info.value)
    assert "glip_huge_model.pth" in message
    for name in OFFICIAL_WEIGHTS:
        assert name in message


def test_weights_not_found_is_file_not_found() -> None:
    assert issubclass(WeightsNotFoundError, FileNotFoundError)


def test_download_called_with_repo_and_filename(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, reachable_hub: list[str]
) -> None:
    calls: list[dict[str, object]] = []

    def fake_download(**kwargs: object) -> str:
        calls.append(kwargs)
        target = Path(str(kwargs["local_dir"])) / str(kwargs["filename"])
        target.write_bytes(b"x")
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert resolve_weights(NAME) == isolated_cache / NAME
    assert len(calls) == 1
    assert calls[0]["repo_id"] == "GLIPModel/GLIP"
    assert calls[0]["filename"] == NAME
    assert Path(str(calls[0]["local_dir"])) == isolated_cache
    assert resolve_weights(NAME) == isolated_cache / NAME  # now cached: no second call
    assert len(calls) == 1
    assert reachable_hub == [f"https://huggingface.co/GLIPModel/GLIP/resolve/main/{NAME}"]


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError("network is unreachable"),
        httpx.ConnectError("name resolution failed"),
        LocalEntryNotFoundError("cannot reach the Hub"),
    ],
)
def test_connection_error_becomes_weights_not_found(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, reachable_hub: list[str], error: Exception
) -> None:
    def failing_download(**kwargs: object) -> str:
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(NAME)
    assert str(isolated_cache / NAME) in str(info.value)
    assert info.value.__cause__ is error


def test_hub_module_has_no_network_at_import() -> None:
    # The download function is imported inside _download, so patching the package attribute works.
    assert not hasattr(hub, "hf_hub_download")


def test_unreachable_hub_fails_at_once_without_retries(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The real metadata request, sent to a closed local port: one error, no retry, no download."""
    import socket
    import time

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from huggingface_hub.file_download import get_hf_file_metadata

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", get_hf_file_metadata)  # the real request ...
    monkeypatch.setattr(huggingface_hub, "hf_hub_url", lambda repo_id, filename: f"http://127.0.0.1:{port}/{filename}")  # ... to nowhere

    def no_download(**kwargs: object) -> str:
        raise AssertionError("hf_hub_download (and its retries) must not run when the Hub is unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    started = time.monotonic()
    with caplog.at_level("DEBUG"), pytest.raises(WeightsNotFoundError, match="could not download") as info:
        resolve_weights(NAME)
    assert time.monotonic() - started < 5.0
    assert str(isolated_cache / NAME) in str(info.value) and "\n" not in str(info.value)
    assert not [record for record in caplog.records if "Retry" in record.getMessage()]
