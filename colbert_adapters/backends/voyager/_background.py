"""Segment maintenance off the writer's critical path: one worker thread per writable index.

A write commits its documents, seals the mutable segment when it is full (bounded work) and returns; folds and
rebuilds, whose cost grows with the size of the segments involved, run here. Each merge builds its graph file
without holding the write mutex (``_segments.prepare_merge``: segment files are immutable, documents never move
into a segment being merged) and then takes the mutex only for its commit, one SQLite transaction
(``_segments.commit_merge``). A crash at any point leaves the last committed state: an unfinished merge's file is
an orphan the next writable open removes, and its documents are still in their old segments.
"""

from __future__ import annotations

import logging
import threading

from ._segments import commit_merge, plan_merges, prepare_merge
from ._state import IndexState

__all__ = ["Worker"]

logger = logging.getLogger("colbert_adapters.backends.voyager")


class Worker:
    """Runs :func:`._segments.plan_merges`' merges in a daemon thread, started on the first request."""

    def __init__(self, st: IndexState) -> None:
        self._st = st
        self._cond = threading.Condition()
        self._requested = False
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._commits = 0
        #: The exception of the last merge that failed (the index keeps its previous state); cleared by a success.
        self.error: BaseException | None = None

    def request(self) -> None:
        """Ask for the merges the segments need (returns at once)."""
        with self._cond:
            if self._stopping:
                return
            self._requested = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"voyager-maintenance {self._st.root}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def pending(self) -> bool:
        """Whether merges are requested or running."""
        with self._cond:
            return self._requested or self._busy

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no merge is requested or running; ``False`` when ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._requested or self._busy) or self._stopping, timeout)

    def wait_progress(self, timeout: float) -> None:
        """Block until the worker commits its next merge, or is idle, or ``timeout`` seconds pass."""
        with self._cond:
            seen = self._commits
            self._cond.wait_for(
                lambda: self._commits != seen or not (self._requested or self._busy) or self._stopping, timeout
            )

    def close(self) -> None:
        """Let a running merge finish (or fail), start no other, and end the thread. Idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        st = self._st
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._requested or self._stopping)
                if self._stopping:
                    self._cond.notify_all()
                    return
                self._requested = False
                self._busy = True
            try:
                self._merge_all()
                self.error = None
            except BaseException as err:  # the index keeps its committed state; the next write asks again
                self.error = err
                logger.exception("background segment maintenance of %s failed", st.root)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _merge_all(self) -> None:
        st = self._st
        with st.maintenance_lock:
            while not self._stopping:
                with st.write_mutex:
                    if st.closed:
                        return
                    jobs = plan_merges(st)
                if not jobs:
                    return
                seg_ids, into = jobs[0]
                with st.db.reader() as conn:  # one thread: the writer's seals and the searches keep a core
                    built = prepare_merge(st, conn, seg_ids, into, num_threads=1)
                with st.write_mutex:
                    if st.closed:  # pragma: no cover - close() waits for the worker first
                        return
                    commit_merge(st, built)
                with self._cond:
                    self._commits += 1
                    self._cond.notify_all()
