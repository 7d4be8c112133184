"""How every ``glip`` sub-command ends: any failure becomes one line on stderr and exit code 2
(``--debug`` re-raises it with its traceback); Ctrl-C exits 130."""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def run_command(command: Callable[[], int], debug: bool, interrupted: str = "interrupted") -> int:
    """Run ``command`` and turn an exception into the CLI's one-line error."""
    try:
        return command()
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the CLI's job is to turn any failure into one line
        if debug:
            raise
        print(f"error: {str(error).strip() or type(error).__name__}", file=sys.stderr)
        return EXIT_ERROR
