import pytest

from glip.cli_errors import EXIT_ERROR, EXIT_INTERRUPTED, run_command


def _fail() -> int:
    raise ValueError("the image is empty: give a real one\n")


def _interrupt() -> int:
    raise KeyboardInterrupt


def test_failure_is_one_line_and_exit_2(capsys):
    assert run_command(_fail, debug=False) == EXIT_ERROR == 2
    assert capsys.readouterr().err == "error: the image is empty: give a real one\n"
    with pytest.raises(ValueError):
        run_command(_fail, debug=True)


def test_interrupt_and_success(capsys):
    assert run_command(_interrupt, debug=False, interrupted="stopped") == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "stopped\n"
    assert run_command(lambda: 0, debug=False) == 0
