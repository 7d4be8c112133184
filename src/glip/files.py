"""Writing files so that nothing is ever half-written: the one atomic writer of the project.

Model files, adapters, training checkpoints and generated datasets are written to a temporary
file beside their destination and renamed over it in one step, so a crash or a kill leaves
either the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object], durable: bool = False) -> Path:
    """Call ``write(temporary)`` on a new file beside ``path``, then rename it over ``path``.

    The file gets the permissions of any new file (0666 less the umask, usually 0644), not the
    0600 of a temporary file; a failed write leaves nothing behind. The temporary file is named
    ``.NAME.XXXX.tmp`` (see :func:`stale_temporaries`). ``durable=True`` also flushes the file and
    its folder to disk before returning (training checkpoints: survive a power loss).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(descriptor)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        if durable:
            _fsync(temporary, os.O_RDONLY)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent, os.O_RDONLY)
    return path


def stale_temporaries(directory: str | os.PathLike, pattern: str = "*") -> list[Path]:
    """Temporary files a killed :func:`write_atomically` left in ``directory`` for names matching
    ``pattern`` (e.g. ``"step_*.pt"``)."""
    return sorted(Path(directory).glob(f".{pattern}.*.tmp"))


def _fsync(path: Path, flags: int) -> None:
    try:
        descriptor = os.open(path, flags)
    except OSError:  # Windows cannot open directories; the rename is durable enough there
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it, briefly
    os.umask(mask)
    return mask
