#!/usr/bin/env python3
"""PyLate side of ``bench_encoder.py``; runs inside PyLate's own virtualenv (not ours).

Standard library + PyLate only (and ``_common.py`` beside it, standard library only): it must not import
colbert_adapters.

Two modes:

``serve``  a long-lived worker driven by ``bench_encoder.py`` so PyLate and our encoder can be timed in
           alternating rounds. Commands are JSON lines on stdin; each reply is one JSON line on the
           original stdout (everything PyLate/transformers print is redirected to stderr). Embeddings are
           exchanged as ``.npy`` files in a work directory.

``long``   encode one long document in a fresh process (so peak RSS belongs to this run alone), under an
           optional address-space cap, and write a JSON result; failures (out of memory) are recorded,
           not raised.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

# Run as a script: this folder is on sys.path, so the shared helpers import as a top-level module.
from _common import encode_failure, peak_memory, proc_status_kib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _versions() -> dict:
    import platform

    import numpy
    import pylate
    import sentence_transformers
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "pylate": getattr(pylate, "__version__", "?"),
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def _load(checkpoint: str, document_length: int | None = None):
    from pylate import models

    kwargs = {}
    if document_length:
        kwargs["document_length"] = document_length
    return models.ColBERT(model_name_or_path=checkpoint, device="cpu", **kwargs)


def serve(a: argparse.Namespace) -> int:
    # Keep a private handle on the real stdout for the protocol; send every other write to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    _set_threads(a.threads)
    import numpy as np
    import torch

    t0 = time.perf_counter()
    model = _load(a.checkpoint)
    reply(
        {
            "ok": True,
            "event": "ready",
            "load_s": time.perf_counter() - t0,
            "versions": _versions(),
            "document_length": model.document_length,
            "query_length": model.query_length,
            "do_query_expansion": model.do_query_expansion,
        }
    )
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        try:
            op = cmd["op"]
            if op == "quit":
                reply({"ok": True})
                return 0
            if op == "query_one":  # one query, timed here (the pipe round trip is not counted)
                w0 = time.perf_counter()
                e = model.encode([cmd["text"]], is_query=True, batch_size=1, show_progress_bar=False)[0]
                wall = time.perf_counter() - w0
                if cmd.get("save"):
                    np.save(cmd["save"], np.asarray(e, dtype=np.float32))
                reply({"ok": True, "wall_s": wall, "n_rows": len(e)})
                continue
            with open(cmd["texts"], encoding="utf-8") as f:
                texts = json.load(f)
            if op == "encode_documents":
                w0, c0 = time.perf_counter(), time.process_time()
                emb = model.encode(texts, is_query=False, batch_size=cmd["batch_size"], show_progress_bar=False)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                if cmd.get("save"):
                    np.save(cmd["save"], np.concatenate([np.asarray(e, dtype=np.float32) for e in emb]))
                reply({"ok": True, "wall_s": wall, "cpu_s": cpu, "lengths": [len(e) for e in emb]})
            elif op == "query_latency":
                times, lengths, out = [], [], []
                for q in texts:
                    w0 = time.perf_counter()
                    e = model.encode([q], is_query=True, batch_size=1, show_progress_bar=False)[0]
                    times.append(time.perf_counter() - w0)
                    lengths.append(len(e))
                    out.append(np.asarray(e, dtype=np.float32))
                if cmd.get("save"):
                    np.save(cmd["save"], np.concatenate(out))
                reply({"ok": True, "times_s": times, "lengths": lengths})
            else:
                reply({"ok": False, "error": f"unknown op {op!r}"})
        except Exception as err:  # report, keep serving
            reply({"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})
    del torch
    return 0


def long_run(a: argparse.Namespace) -> int:
    import resource

    if a.mem_cap_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (a.mem_cap_bytes, a.mem_cap_bytes))
    result: dict = {"impl": "pylate", "length": a.length, "mem_cap_bytes": a.mem_cap_bytes}
    t_start = time.perf_counter()
    try:
        _set_threads(a.threads)
        import numpy as np

        with open(a.text, encoding="utf-8") as f:
            text = f.read()
        t0 = time.perf_counter()
        model = _load(a.checkpoint, document_length=a.length)
        result["load_s"] = time.perf_counter() - t0
        result["versions"] = _versions()
        result["rss_after_load_kib"] = proc_status_kib("VmRSS")
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            emb = model.encode([text], is_query=False, batch_size=1, show_progress_bar=False)[0]
            result["status"] = "ok"
            result["n_rows"] = len(emb)
            if a.save:
                np.save(a.save, np.asarray(emb, dtype=np.float32))
        except (MemoryError, RuntimeError) as err:
            result.update(encode_failure(err))
        result["encode_wall_s"] = time.perf_counter() - w0
        result["encode_cpu_s"] = time.process_time() - c0
    except Exception as err:
        result["status"] = "error"
        result["error"] = f"{type(err).__name__}: {err}"
        result["traceback"] = traceback.format_exc()
    result["total_wall_s"] = time.perf_counter() - t_start
    result.update(peak_memory())
    with open(a.result, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--threads", type=int, required=True)
    lr = sub.add_parser("long")
    lr.add_argument("--checkpoint", required=True)
    lr.add_argument("--threads", type=int, required=True)
    lr.add_argument("--length", type=int, required=True)
    lr.add_argument("--text", required=True)
    lr.add_argument("--result", required=True)
    lr.add_argument("--save")
    lr.add_argument("--mem-cap-bytes", type=int, default=0)
    a = ap.parse_args()
    return serve(a) if a.mode == "serve" else long_run(a)


if __name__ == "__main__":
    sys.exit(main())
