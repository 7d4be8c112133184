"""``glip serve``: options become a ServeConfig; failures are one line and exit code 2."""

from __future__ import annotations

from glip.cli import main as glip_main
from glip.serving.cli import build_parser, serve_config


def test_options_become_the_serve_config():
    args = build_parser().parse_args(["--max-batch", "4", "--batch-window-ms", "2", "--queue-size", "9",
                                      "--timeout", "7", "--max-upload-mb", "2", "--max-megapixels", "1.5"])
    config = serve_config(args)
    assert (config.max_batch, config.batch_window_ms, config.queue_size, config.request_timeout_s) == (4, 2.0, 9, 7.0)
    assert (config.max_upload_bytes, config.max_pixels) == (2 * 2**20, 1_500_000)
    assert (args.host, args.port) == ("127.0.0.1", 8000)  # loopback unless asked otherwise


def test_errors_are_one_line(capsys, tmp_path):
    assert glip_main(["serve", "--max-batch", "0"]) == 2
    assert capsys.readouterr().err.strip() == ("error: ServeConfig.max_batch must be at least 1 (1 = no batching), "
                                               "got 0")
    assert glip_main(["serve", "--weights", str(tmp_path / "missing.safetensors")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "missing.safetensors" in error and "\n" not in error
