"""The one inter-process lock: an exclusive lock on a lock file (``filelock``, flock on Unix) with a timeout, so
read-modify-write updates of a dataset's LATEST or a model's aliases never interleave. The kernel drops the lock
when its holder dies; the lock file itself is kept."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


class LockTimeoutError(TimeoutError):
    """The lock file stayed locked by another process for longer than the timeout."""


@contextmanager
def exclusive_lock(
    path: str | Path,
    timeout_s: float | None = 60.0,
    poll_s: float = 0.05,
    timeout_message: str | None = None,
    error: type[LockTimeoutError] = LockTimeoutError,
) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block; ``timeout_s`` None waits
    forever, else ``error`` (``timeout_message``, or one naming the file) after that many seconds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=-1 if timeout_s is None else timeout_s, poll_interval=poll_s, mode=0o644,
                    preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout:
        raise error(
            timeout_message or f"{path}: still locked by another process after {timeout_s:.0f} s"
        ) from None
    try:
        yield
    finally:
        lock.release()


__all__ = ["LockTimeoutError", "exclusive_lock"]
