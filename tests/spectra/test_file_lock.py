"""The one inter-process lock: exclusive, gives up after the timeout with a clear error, keeps its lock file."""

from __future__ import annotations

import time

import pytest

from libs_pipeline.spectra.file_lock import LockTimeoutError, exclusive_lock
from libs_pipeline.spectra.store import DatasetLockedError, SpectraStore


def test_a_held_lock_times_out_and_is_free_again_after_release(tmp_path):
    path = tmp_path / "sub" / "x.lock"
    with exclusive_lock(path):
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match=r"x.lock: still locked by another process after 0 s"):
            with exclusive_lock(path, timeout_s=0.2):
                pass
        assert time.monotonic() - started >= 0.2
        with pytest.raises(KeyError, match="custom"):
            class Custom(LockTimeoutError, KeyError):
                pass
            with exclusive_lock(path, timeout_s=0.0, timeout_message="custom", error=Custom):
                pass
    assert path.is_file()  # kept for the next holder
    with exclusive_lock(path, timeout_s=0.0):
        pass


def test_dataset_lock_error_names_the_dataset_and_the_wait(tmp_path):
    store = SpectraStore(tmp_path)
    with store.lock("toy"):
        with pytest.raises(DatasetLockedError, match=r"dataset 'toy' .* locked by another ingest; gave up after 0.1 s"):
            with store.lock("toy", timeout_s=0.1):
                pass
    with store.lock("toy", timeout_s=0.1):
        pass
