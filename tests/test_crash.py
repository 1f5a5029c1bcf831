"""Crash safety of the persistent backends: kill -9 a writer process at random points, reopen, check.

Every write that returned before the kill must be there, and nothing else may have changed but the write in
flight. VoyagerBackend commits a whole write in one SQLite transaction, so the write in flight is applied
completely or not at all, and its segment files, label map and store agree (no orphans, searchable). Qdrant
Edge applies a write as one update per batch of points, so each document of the write in flight is either
in its old or in its new state (a Qdrant server behaves the same; re-running the write is idempotent).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from crash_writer import COMPRESSED, DIM, POOL, apply_op, make_op, open_backend

from colbert_adapters.backends.memory import MemoryBackend

ROOT = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).resolve().parent / "crash_writer.py"

State = dict[str, tuple[Any, ...]]


def _read_state(backend: Any) -> State:
    return {r.id: (r.text, dict(r.metadata), np.asarray(r.vectors)) for r in backend.get(POOL, with_vectors=True)}


def _same_doc(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None, atol: float = 0.0) -> bool:
    """Same text, metadata and vectors (``atol``: a compressed store's decompressed vectors, within it)."""
    if a is None or b is None:
        return a is b
    if atol:
        same = a[2].shape == b[2].shape and np.allclose(a[2], b[2], atol=atol)
    else:
        same = np.array_equal(a[2], b[2])
    return bool(a[0] == b[0] and a[1] == b[1] and same)


def _same(state: State, model: State, atol: float = 0.0) -> bool:
    return state.keys() == model.keys() and all(_same_doc(state[i], model[i], atol) for i in model)


def _per_document(state: State, before: State, after: State) -> bool:
    """Every document is in its ``before`` or its ``after`` state (a partially applied multi-document write)."""
    return all(
        _same_doc(state.get(i), before.get(i)) or _same_doc(state.get(i), after.get(i))
        for i in set(state) | set(before) | set(after)
    )


#: Vector tolerance per kind: 2-bit residuals of 8-d unit vectors (texts and metadata still identify each write).
ATOL = {COMPRESSED: 1.0}


def _check_consistent(kind: str, backend: Any, model: State, path: Path) -> None:
    assert backend.count() == len(model)
    if kind.startswith("voyager"):
        backend.wait_for_maintenance()  # the reopened writer may resume the merges the killed one had pending
        stats = backend.stats()
        assert stats["n_live_tokens"] == sum(v[2].shape[0] for v in model.values())
        # The lexical (FTS5) index holds exactly the committed texts: every live document, no deleted one.
        with contextlib.closing(sqlite3.connect(path / "store.sqlite")) as db:
            db.execute("INSERT INTO docs_fts(docs_fts, rank) VALUES ('integrity-check', 1)")
        words = " ".join(v[0] for v in model.values())
        assert {h.id for h in backend.lexical_search(words, k=len(POOL))} == set(model)
        # No orphan segment files, no temporary files left behind by the killed writer.
        assert sorted(p.name for p in path.glob("seg-*")) == sorted(s["file"] for s in stats["segments"])
        assert not [p.name for p in path.iterdir() if p.name.endswith(".tmp")]
    if not model:
        return
    # Every live document is searchable and scored exactly; results match the exact oracle.
    oracle = MemoryBackend(dim=DIM)
    oracle.upsert(list(model), [v[2] for v in model.values()])
    for doc_id in list(model)[:5]:
        hits = backend.search(model[doc_id][2], k=3)
        want = oracle.search(model[doc_id][2], k=3)
        if kind == COMPRESSED:  # scored on decompressed vectors: at most the exact self-similarity
            assert 0.5 * want[0].score <= hits[0].score <= want[0].score + 1e-4
        else:
            assert hits[0].score == pytest.approx(want[0].score, abs=1e-4)
        assert hits[0].text is not None and hits[0].id in model


def _run_kills(kind: str, tmp_path: Path, n_kills: int, seed: int) -> None:
    path = tmp_path / "index"
    rng = np.random.default_rng(seed)
    model: State = {}
    applied = -1  # last operation reflected in the index
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(WRITER.parent)])}
    total_ops = partial = during_background = 0
    for kill in range(n_kills):
        log = tmp_path / f"log{kill}.txt"
        first = applied + 1
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), kind, str(path), str(seed), str(first), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != b"ready":
                proc.kill()
                raise AssertionError(f"writer failed to start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(float(rng.uniform(0.0, 0.35)))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            if proc.stderr is not None:
                proc.stderr.close()
        lines = log.read_text().splitlines() if log.exists() else []
        acked = [int(line.split()[0]) for line in lines]
        assert acked == list(range(first, first + len(acked)))
        during_background += bool(lines) and lines[-1].endswith(" bg")
        last = first + len(acked) - 1
        for n in range(first, last + 1):
            apply_op(model, make_op(seed, n), kind)
        in_flight = dict(model)
        apply_op(in_flight, make_op(seed, last + 1), kind)
        backend = open_backend(kind, str(path))
        try:
            state = _read_state(backend)
            atol = ATOL.get(kind, 0.0)
            if _same(state, model, atol):
                applied = last
            elif _same(state, in_flight, atol):  # the write in flight committed before the kill
                model, applied = in_flight, last + 1
            elif kind == "qdrant-edge" and _per_document(state, model, in_flight):
                # Part of the write in flight landed: finish it, as a caller retrying the write would.
                op = make_op(seed, last + 1)
                if op[0] == "upsert":
                    backend.upsert(op[1], op[2], texts=op[3], metadatas=op[4])
                else:
                    backend.delete(op[1])
                model, applied = in_flight, last + 1
                partial += 1
            else:
                raise AssertionError(
                    f"kill {kill}: state after op {last} matches neither the acknowledged state nor the next one"
                )
            _check_consistent(kind, backend, model, path)
        finally:
            backend.close()
        total_ops += len(acked)
    assert total_ops > n_kills  # the kills landed at many different points of the stream
    assert partial <= n_kills // 2  # a torn write is the exception, not the rule
    if kind.startswith("voyager"):
        assert during_background > 0  # some kills came while a background merge was requested or running


@pytest.mark.parametrize("kind", ["voyager", "voyager-int8-projected", COMPRESSED, "qdrant-edge"])
def test_kill_writer_at_random_points(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("voyager" if kind.startswith("voyager") else "qdrant_edge")
    _run_kills(kind, tmp_path, n_kills=18, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["voyager", "voyager-int8-projected", COMPRESSED, "qdrant-edge"])
def test_kill_writer_many_times(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("voyager" if kind.startswith("voyager") else "qdrant_edge")
    _run_kills(kind, tmp_path, n_kills=120, seed=11)
