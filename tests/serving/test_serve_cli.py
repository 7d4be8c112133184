"""``glip serve``: options become a ServeConfig; failures are one line and exit code 2."""

from __future__ import annotations

from glip.cli import main as glip_main
from glip.serving.cli import build_parser, serve_config


def test_options_become_the_serve_config():
    args = build_parser().parse_args(["--max-batch", "4", "--batch-window-ms", "2", "--queue-size", "9",
                                      "--timeout", "7", "--max-upload-mb", "2", "--max-megapixels", "1.5",
                                      "--max-decodes", "3", "--max-classes", "20", "--max-prompt-chars", "500",
                                      "--max-prompt-chunks", "4"])
    config = serve_config(args)
    assert (config.max_batch, config.batch_window_ms, config.queue_size, config.request_timeout_s) == (4, 2.0, 9, 7.0)
    assert (config.max_upload_bytes, config.max_pixels) == (2 * 2**20, 1_500_000)
    limits = (config.max_decodes, config.max_classes, config.max_prompt_chars, config.max_prompt_chunks)
    assert limits == (3, 20, 500, 4)
    assert (args.host, args.port) == ("127.0.0.1", 8000)  # loopback unless asked otherwise


def test_defaults_share_the_pixel_limit_of_the_cli():
    from glip.images import DEFAULT_MAX_MEGAPIXELS

    config = serve_config(build_parser().parse_args([]))
    assert config.max_pixels == DEFAULT_MAX_MEGAPIXELS * 1_000_000
    assert (config.max_classes, config.max_prompt_chunks, config.max_decodes) == (1000, 16, 2)


def test_errors_are_one_line(capsys, tmp_path):
    assert glip_main(["serve", "--max-batch", "0"]) == 2
    assert capsys.readouterr().err.strip() == ("error: ServeConfig.max_batch must be at least 1 (1 = no batching), "
                                               "got 0")
    assert glip_main(["serve", "--max-prompt-chunks", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: ServeConfig.max_prompt_chunks must be at least 1, got 0"
    assert glip_main(["serve", "--weights", str(tmp_path / "missing.safetensors")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "missing.safetensors" in error and "\n" not in error
