"""Segment maintenance off the writer's critical path: two worker threads per writable index.

A write commits its documents to the mutable segment (searched exactly) and returns. The *sealer* turns a full
mutable segment into an HNSW segment; the *merger* runs folds and rebuilds, whose cost grows with the size of the
segments involved. They are separate threads so that a long fold never holds up sealing. Each builds its graph
file without holding the write mutex (``_segments.prepare_seal`` works on a snapshot of the mutable segment;
``_segments.prepare_merge`` on immutable segment files, into which documents never move) and takes the mutex
only for its commit, one SQLite transaction. A crash at any point leaves the last committed state: an unfinished
build's file is an orphan the next writable open removes, and its documents are where they were.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ._compressed import remove_dir
from ._cstore import seal_threshold
from ._segments import commit_merge, commit_seal, plan_merges, prepare_merge, prepare_seal
from ._state import IndexState

__all__ = ["Worker", "start_workers"]

logger = logging.getLogger("colbert_adapters.backends.voyager")

#: Most tokens the sealer puts in one graph, in multiples of ``mutable_max_tokens``.
SEAL_BATCH = 4


def start_workers(st: IndexState) -> None:
    """Give a writable index its sealer and merger (threads start on their first request), and request what the
    index already needs."""
    st.sealer = Worker(st, _seal_all, "seal")
    st.worker = Worker(st, _merge_all, "merge")
    if st.mutable_tokens >= seal_threshold(st):
        st.sealer.request()
    if plan_merges(st):
        st.worker.request()


class Worker:
    """Runs one kind of maintenance (``job``) in a daemon thread, started on the first request."""

    def __init__(self, st: IndexState, job: Callable[[IndexState, Worker], None], kind: str) -> None:
        self._st = st
        self._job = job
        self.kind = kind
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
                    target=self._run, name=f"voyager-{self.kind} {self._st.root}", daemon=True
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

    @property
    def stopping(self) -> bool:
        return self._stopping

    def committed(self) -> None:
        """Record one committed step (wakes :meth:`wait_progress`)."""
        with self._cond:
            self._commits += 1
            self._cond.notify_all()

    def wait_progress(self, timeout: float) -> None:
        """Block until the worker commits its next step, or is idle, or ``timeout`` seconds pass."""
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
                self._job(st, self)
                self.error = None
            except BaseException as err:  # the index keeps its committed state; the next write asks again
                self.error = err
                logger.exception("background %s of %s failed", self.kind, st.root)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


def _seal_all(st: IndexState, worker: Worker) -> None:
    """Seal the mutable segment while it is full (several writes may land during one build: the next takes them)."""
    with st.seal_lock:
        while not worker.stopping:
            with st.write_mutex:
                if st.closed or st.mutable_tokens < seal_threshold(st):
                    return
            # Oldest documents first, a few mutable segments' worth per graph: commits stay frequent when behind.
            built = prepare_seal(st, max_tokens=SEAL_BATCH * st.tuning.mutable_max_tokens)
            if built is None:
                return
            with st.write_mutex:
                if st.closed:  # pragma: no cover - close() waits for the workers first
                    remove_dir(st.root / built.name)
                    return
                commit_seal(st, built)
                needs_merge = bool(plan_merges(st))
            if needs_merge and st.worker is not None:
                st.worker.request()
            worker.committed()


def _merge_all(st: IndexState, worker: Worker) -> None:
    with st.maintenance_lock:
        while not worker.stopping:
            with st.write_mutex:
                if st.closed:
                    return
                jobs = plan_merges(st)
            if not jobs:
                return
            seg_ids, into = jobs[0]
            with st.db.reader() as conn:
                built = prepare_merge(st, conn, seg_ids, into)
            with st.write_mutex:
                if st.closed:  # pragma: no cover - close() waits for the workers first
                    return
                commit_merge(st, built)
            worker.committed()
