"""Crash safety of VoyagerBackend: kill -9 a writer process at random points, reopen, check consistency.

Every write that returned before the kill must be there; the write in flight is either fully applied or
not at all; the segment files, the label map and the SQLite store agree (no orphans, searchable).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from voyager_crash_writer import DIM, OPTIONS, POOL, apply_op, make_op

from colbert_adapters.backends.memory import MemoryBackend
from colbert_adapters.backends.voyager import VoyagerBackend

ROOT = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).resolve().parent / "voyager_crash_writer.py"


def _read_state(backend: VoyagerBackend) -> dict[str, tuple[Any, ...]]:
    return {r.id: (r.text, dict(r.metadata), np.asarray(r.vectors)) for r in backend.get(POOL, with_vectors=True)}


def _same(state: dict[str, tuple[Any, ...]], model: dict[str, tuple[Any, ...]]) -> bool:
    return state.keys() == model.keys() and all(
        state[i][0] == model[i][0] and state[i][1] == model[i][1] and np.array_equal(state[i][2], model[i][2])
        for i in model
    )


def _check_consistent(backend: VoyagerBackend, model: dict[str, tuple[Any, ...]], path: Path) -> None:
    assert backend.count() == len(model)
    stats = backend.stats()
    assert stats["n_live_tokens"] == sum(v[2].shape[0] for v in model.values())
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
        assert hits[0].score == pytest.approx(want[0].score, abs=1e-4)
        assert hits[0].text is not None and hits[0].id in model


def _run_kills(tmp_path: Path, n_kills: int, seed: int) -> None:
    path = tmp_path / "index"
    rng = np.random.default_rng(seed)
    model: dict[str, tuple[Any, ...]] = {}
    applied = -1  # last operation reflected in the index
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(WRITER.parent)])}
    total_ops = 0
    for kill in range(n_kills):
        log = tmp_path / f"log{kill}.txt"
        first = applied + 1
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), str(seed), str(first), str(log)],
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
        acked = [int(x) for x in log.read_text().split()] if log.exists() else []
        assert acked == list(range(first, first + len(acked)))
        last = first + len(acked) - 1
        for n in range(first, last + 1):
            apply_op(model, make_op(seed, n))
        in_flight = dict(model)
        apply_op(in_flight, make_op(seed, last + 1))
        backend = VoyagerBackend(path, **OPTIONS)
        try:
            state = _read_state(backend)
            if _same(state, model):
                applied = last
            elif _same(state, in_flight):  # the write in flight committed before the kill
                model, applied = in_flight, last + 1
            else:
                raise AssertionError(
                    f"kill {kill}: state after op {last} matches neither the acknowledged state nor the next one"
                )
            _check_consistent(backend, model, path)
        finally:
            backend.close()
        total_ops += len(acked)
    assert total_ops > n_kills  # the kills landed at many different points of the stream


def test_kill_writer_at_random_points(tmp_path: Path) -> None:
    _run_kills(tmp_path, n_kills=18, seed=7)


@pytest.mark.slow
def test_kill_writer_many_times(tmp_path: Path) -> None:
    _run_kills(tmp_path, n_kills=120, seed=11)
