"""Memory for the feature engine's output block.

The full Alpha158 output of the synthetic market is 158 float32 columns x 1.185M rows, 750 MB.
On the VMs we run on, the first write to a fresh page costs far more than the write itself
(``benchmarks/RESULTS.md``: 0.3-1.1 s of page faults for 750 MB, against 0.09 s to rewrite it).
The kernel populates a whole mapping much more cheaply than faulting it page by page, and it can
do so on another core while the engine is still planning. :class:`OutputBlock` does that: a
private anonymous mapping, populated by ``madvise(MADV_POPULATE_WRITE)``, 2 MB at a time, on a background thread
(called through ctypes, so the GIL is released), handed to the engine when it first writes.

Where the call is unavailable (not Linux, a kernel before 5.14) the mapping is faulted in on
first write as before; nothing else changes. Small blocks (a daily increment) use ``np.empty``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

#: Output blocks at least this large get their own mapping, populated in the background.
POPULATE_MIN_BYTES = 64 << 20

#: ``MADV_POPULATE_WRITE`` (Linux 5.14+): fault in every page of a range as if written.
_MADV_POPULATE_WRITE = 23

#: Bytes populated per call (measured: 2 MB chunks let the planning run at full speed; one call
#: for the whole block slowed it from 0.23 to 0.4-0.7 s).
_POPULATE_CHUNK = 2 << 20


def _load_madvise() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):  # pragma: no cover - no libc with madvise (not Linux)
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


_madvise = _load_madvise()


class OutputBlock:
    """An uninitialised ``(n_rows, n_cols)`` float32 array in column-major order.

    Large blocks are mapped at construction and populated on a background thread. Construct
    it as early as the size is known, so the population overlaps other work. The array can be
    written at once: a page written before the population reaches it is simply faulted in by the
    write, and the population skips it. :meth:`wait` joins the thread.
    """

    def __init__(self, n_rows: int, n_cols: int) -> None:
        self.shape = (int(n_rows), int(n_cols))
        nbytes = self.shape[0] * self.shape[1] * 4
        self._thread: threading.Thread | None = None
        self._populated: bool | None = None
        if nbytes < POPULATE_MIN_BYTES or not hasattr(mmap, "MAP_PRIVATE"):
            self._array = np.empty(self.shape, dtype=np.float32, order="F")
            return
        flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0x20)
        buffer = mmap.mmap(-1, nbytes, flags=flags)
        self._array = np.ndarray(self.shape, dtype=np.float32, buffer=buffer, order="F")
        if _madvise is not None:
            address, size = self._array.ctypes.data, nbytes
            self._thread = threading.Thread(
                target=self._populate, args=(address, size), name="qonline-output-populate", daemon=True
            )
            self._thread.start()

    def _populate(self, address: int, size: int) -> None:
        assert _madvise is not None
        # in chunks: populating holds the process's memory-map lock, and the planning thread
        # needs it (in write mode) for every large allocation it makes meanwhile
        ok = True
        for offset in range(0, size, _POPULATE_CHUNK):
            if _madvise(address + offset, min(_POPULATE_CHUNK, size - offset), _MADV_POPULATE_WRITE) != 0:
                ok = False
                break
        if not ok:  # e.g. EINVAL before Linux 5.14: pages are faulted in on first write instead
            log.debug("madvise(MADV_POPULATE_WRITE) failed: errno %d", ctypes.get_errno())
        self._populated = ok

    @property
    def populated(self) -> bool | None:
        """Whether the background population succeeded (``None``: not attempted or still running)."""
        return self._populated

    def array(self) -> npt.NDArray[np.float32]:
        """The block (the population, if any, may still be running)."""
        return self._array

    def wait(self) -> npt.NDArray[np.float32]:
        """The block, once the background population (if any) has finished."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self._array
