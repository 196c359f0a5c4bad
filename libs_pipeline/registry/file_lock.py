"""An exclusive inter-process lock on a lock file (fcntl.flock), so read-modify-write updates never interleave."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockTimeoutError(TimeoutError):
    """The lock file stayed locked by another process for longer than the timeout."""


@contextmanager
def exclusive_lock(path: str | Path, timeout_s: float = 60.0, poll_s: float = 0.01) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the duration of the ``with`` block.

    The lock is released when the block exits or the process dies (the kernel drops flocks with the fd).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"{path}: still locked by another process after {timeout_s:.0f} s"
                    ) from None
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
