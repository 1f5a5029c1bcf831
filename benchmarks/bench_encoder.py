#!/usr/bin/env python3
"""Encoder benchmark: colbert-adapters' ColBERTEncoder vs PyLate 1.6.0, side by side in one run.

    python benchmarks/bench_encoder.py            # full run (~30-45 min)
    python benchmarks/bench_encoder.py --quick    # smoke run (minutes; add --checkpoint-size tiny for seconds)

Ours runs in this process (our virtualenv); PyLate runs in its own virtualenv (``--pylate-python``, default
``$PYLATE_PYTHON`` or ``../venvs/pylate/bin/python`` beside the checkout) through ``benchmarks/_pylate_worker.py``
(a long-lived worker for the short workloads, so the two are timed in alternating rounds on the same texts; a
fresh process per long document, so peak RSS is per run). Without it, the PyLate columns are skipped and the
report says so.

Workloads (texts generated deterministically from a seeded RNG and a fixed word list):

1. throughput: N documents of ``document_length`` (300) tokens, batch_size 32 -> docs/s for PyLate,
   ours fp32 (default), ours bf16 (``dtype="bfloat16"``), ours fp32 + int8 dynamic quantisation of the
   backbone's Linear layers (extra row). Best of ``--repeats`` alternating rounds; all runs are in the JSON.
2. fidelity: ours fp32 vs PyLate (identical token counts, max |diff|); fast paths vs ours fp32 (per-token
   cosine, min and mean).
3. single-query latency: queries of ``query_length`` (32) tokens encoded one at a time; p50/p90 over all
   rounds pooled.
4. long documents (8,192 and 32,768 tokens, ``document_length`` = that): wall time and peak RSS for ours
   (fp32) and PyLate, each in a fresh subprocess under an address-space cap, with a timeout.

Writes ``<out>.md`` and ``<out>.json`` (default ``benchmarks/results/encoder``) and prints the markdown.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import hashlib
import logging
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from benchmarks._common import (  # noqa: E402
    REPO,
    SHARED_TOOLS,
    WORK,
    GiB,
    Stopwatch,
    cpu_info,
    default_pylate_python,
    loadavg,
    meminfo,
    output_stem,
    percentile,
    pylate_missing_note,
    pylate_python_found,
    read_json,
    write_json,
)
from benchmarks._encoder_report import evaluate_targets, fmt, render_markdown  # noqa: E402
from benchmarks._encoder_runs import PyLateWorker, ours_long_worker, run_isolated  # noqa: E402
from benchmarks._encoder_texts import make_text  # noqa: E402

log = logging.getLogger("bench_encoder")

#: What ``--skip`` accepts.
SECTIONS = ("throughput", "latency", "long", "int8")
#: CPU flags the report names (bf16 / int8 matrix units and the vector extensions).
FLAGS_OF_NOTE = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "avx512_fp16"}


# ---------------------------------------------------------------------------------------------- settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--checkpoint",
        help="PyLate-format checkpoint dir (default: build a random-weight one "
        "in benchmarks/_work/ with ../shared/tools/make_checkpoint.py, or $MAKE_CHECKPOINT)",
    )
    ap.add_argument(
        "--checkpoint-size",
        choices=["base", "tiny"],
        default="base",
        help="size of the default random checkpoint (base = GTE-ModernColBERT-v1's real size)",
    )
    ap.add_argument(
        "--pylate-python",
        default=default_pylate_python(),
        help="python of a virtualenv with PyLate (default $PYLATE_PYTHON or %(default)s); "
        "'' skips the reference columns",
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument(
        "--out",
        help="output path without extension (default benchmarks/results/encoder, "
        "or benchmarks/_work/encoder-quick with --quick)",
    )
    ap.add_argument("--repeats", type=int, help="alternating rounds per config (default 2, 1 with --quick)")
    ap.add_argument("--n-docs", type=int)
    ap.add_argument("--n-queries", type=int)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--long-lengths", help="comma-separated long-document lengths (default 8192,32768)")
    ap.add_argument("--long-timeout-ours", type=float, default=1500.0, help="seconds, per long run of ours")
    ap.add_argument("--long-timeout-pylate", type=float, default=900.0, help="seconds, per long PyLate run")
    ap.add_argument(
        "--mem-cap-gib",
        type=float,
        help="RLIMIT_AS for each long-document process (default min(22, MemAvailable - 1) GiB)",
    )
    ap.add_argument("--skip", default="", help=f"comma-separated sections to skip: {','.join(SECTIONS)}")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--long-worker", help=argparse.SUPPRESS)
    ap.add_argument("--render", metavar="JSON", help="only re-render <JSON>'s markdown (and targets) next to it")
    return ap.parse_args(argv)


@dataclass
class Settings:
    """The run's sizes and options, with the ``--quick`` defaults applied."""

    threads: int
    quick: bool
    repeats: int
    n_docs: int
    n_queries: int
    batch_size: int
    long_lengths: list[int]
    skip: set[str]
    out: Path
    seed: int
    pylate_python: str
    checkpoint: str | None
    checkpoint_size: str
    long_timeout_ours: float
    long_timeout_pylate: float
    mem_cap_gib: float | None

    @classmethod
    def from_args(cls, a: argparse.Namespace, threads: int) -> Settings:
        quick = a.quick
        lengths = a.long_lengths or ("1024,2048" if quick else "8192,32768")
        return cls(
            threads=threads,
            quick=quick,
            repeats=a.repeats or (1 if quick else 2),
            n_docs=a.n_docs or (16 if quick else 64),
            n_queries=a.n_queries or (10 if quick else 50),
            batch_size=a.batch_size,
            long_lengths=[int(x) for x in lengths.split(",") if x],
            skip={s.strip() for s in a.skip.split(",") if s.strip()},
            out=output_stem(a.out) if a.out else (WORK / "encoder-quick" if quick else HERE / "results" / "encoder"),
            seed=a.seed,
            pylate_python=a.pylate_python,
            checkpoint=a.checkpoint,
            checkpoint_size=a.checkpoint_size,
            long_timeout_ours=a.long_timeout_ours,
            long_timeout_pylate=a.long_timeout_pylate,
            mem_cap_gib=a.mem_cap_gib,
        )

    @property
    def pylate_found(self) -> bool:
        return pylate_python_found(self.pylate_python)


@dataclass
class Texts:
    """The run's texts, and the JSON files the PyLate worker reads them from (``files[name]``)."""

    docs: list[str]
    queries: list[str]
    warm_docs: list[str]
    warm_queries: list[str]
    doc_tokens: list[int]
    chunks: list[list[str]]
    files: dict[str, Path]


@dataclass
class Run:
    """What the steps share: settings, the report being built, our encoders, the texts and the PyLate worker."""

    s: Settings
    env: dict[str, str]
    report: dict[str, Any]
    started: float
    checkpoint: Path = Path()
    encoders: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None
    texts: Texts | None = None
    worker: PyLateWorker | None = None

    @property
    def notes(self) -> list[str]:
        return self.report["notes"]  # type: ignore[no-any-return]

    @property
    def configs(self) -> list[str]:
        """PyLate (when its worker runs) and each of our encoders, in report order."""
        return (["pylate"] if self.worker else []) + list(self.encoders)

    def rotated(self, r: int, k: int) -> list[str]:
        """Config order for step k of round r: rotate the start and alternate the direction, so no config
        always runs first or right after the same neighbour."""
        configs = self.configs
        base = configs if (r + k) % 2 == 0 else list(reversed(configs))
        s = (r + k) % len(base)
        return base[s:] + base[:s]

    def encode_docs(
        self, cfg: str, which: str, texts: list[str], save: Path | None = None
    ) -> tuple[float, float, list[Any]]:
        """Encode one list of documents (one call); returns (wall s, CPU s, vectors or lengths)."""
        if cfg == "pylate":
            assert self.worker is not None and self.texts is not None
            r = self.worker.call(
                op="encode_documents",
                texts=str(self.texts.files[which]),
                batch_size=self.s.batch_size,
                save=str(save) if save else None,
            )
            return r["wall_s"], r["cpu_s"], r["lengths"]
        with Stopwatch() as sw:
            vecs = self.encoders[cfg].encode_documents(texts, batch_size=self.s.batch_size, show_progress=False)
        return sw.wall, sw.cpu, vecs


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.render:
        return render_only(Path(a.render))
    threads = configure_process(a.threads)
    if a.long_worker:
        return ours_long_worker(a.long_worker)
    configure_logging()
    run = start_run(Settings.from_args(a, threads), argv)
    load_encoders(run)
    make_texts(run)
    start_pylate(run)
    if "throughput" not in run.s.skip:
        measure_throughput(run)
    if "latency" not in run.s.skip:
        measure_latency(run)
    release_models(run)
    if "long" not in run.s.skip:
        measure_long_documents(run)
    finish_run(run)
    return 0


def render_only(src: Path) -> int:
    """``--render JSON``: recompute the targets into the JSON and rewrite the markdown next to it."""
    rep = read_json(src)
    rep["targets"] = evaluate_targets(rep)
    write_json(src, rep, indent=1, default=str)
    md = render_markdown(rep)
    src.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    return 0


def configure_process(threads: int) -> int:
    """Thread variables for every process we start (and this one, before torch is imported); offline hub."""
    threads = max(1, threads)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return threads


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("colbert_adapters", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------- set-up steps


def start_run(s: Settings, argv: list[str] | None) -> Run:
    """The report's header (command, machine, settings, code state) and the checkpoint."""
    WORK.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    args = sys.argv[1:] if argv is None else argv
    report: dict[str, Any] = {
        "command": " ".join(shlex.quote(x) for x in [sys.executable, sys.argv[0], *args]),
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(s.threads),
        "load_average": {"start": loadavg()},
        "settings": {
            "quick": s.quick,
            "repeats": s.repeats,
            "n_docs": s.n_docs,
            "n_queries": s.n_queries,
            "batch_size": s.batch_size,
            "long_lengths": s.long_lengths,
            "seed": s.seed,
        },
        "notes": [],
    }
    run = Run(s=s, env=env, report=report, started=time.perf_counter())
    report["code"] = code_state()
    run.checkpoint = ensure_checkpoint(s, env)
    report["checkpoint"] = str(run.checkpoint)
    return run


def machine_info(threads: int) -> dict[str, Any]:
    model, flags = cpu_info()
    mem = meminfo()
    return {
        "cpu_model": model or "unknown",
        "cpu_flags_of_note": sorted(flags & FLAGS_OF_NOTE),
        "logical_cpus": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_total_gib": round(mem.get("MemTotal", 0) / GiB, 1),
        "mem_available_gib_at_start": round(mem.get("MemAvailable", 0) / GiB, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "threads": threads,
    }


def code_state() -> dict[str, Any]:
    """Git commit and the encoder files' hashes, since the code under test may change between runs."""
    out: dict[str, Any] = {}
    try:
        out["git_head"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "colbert_adapters"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        out["colbert_adapters_uncommitted"] = [x[3:] for x in dirty if x.strip()]
    except (OSError, subprocess.CalledProcessError):
        out["git_head"] = None
    for name in ("encoder.py", "_modernbert.py"):
        f = REPO / "colbert_adapters" / name
        if f.exists():
            out[f"sha256_{name}"] = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    return out


def ensure_checkpoint(s: Settings, env: dict[str, str]) -> Path:
    """``--checkpoint``, else a random-weight checkpoint of ``--checkpoint-size`` built once into ``_work/``."""
    if s.checkpoint:
        return Path(s.checkpoint).resolve()
    path = WORK / f"{s.checkpoint_size}-checkpoint"
    if (path / "model.safetensors").exists() and (path / "1_Dense" / "model.safetensors").exists():
        return path
    tool = Path(os.environ.get("MAKE_CHECKPOINT", SHARED_TOOLS / "make_checkpoint.py"))
    if not tool.exists():
        sys.exit(f"no --checkpoint given and {tool} (make_checkpoint.py) not found; set $MAKE_CHECKPOINT")
    log.info("building a random-weight %s checkpoint in %s with %s", s.checkpoint_size, path, tool)
    subprocess.run(
        [sys.executable, str(tool), str(path), "--size", s.checkpoint_size, "--overwrite"], check=True, env=env
    )
    return path


def load_encoders(run: Run) -> None:
    """Our fp32 and bf16 encoders (and the int8 experiment unless skipped); the model settings into the report."""
    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(run.s.threads)
    from colbert_adapters.encoder import ColBERTEncoder

    run.report["ours_versions"] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }
    log.info("loading our encoders from %s", run.checkpoint)
    run.encoders["ours fp32"] = ColBERTEncoder.from_pretrained(run.checkpoint, device="cpu")
    run.encoders["ours bf16"] = ColBERTEncoder.from_pretrained(run.checkpoint, device="cpu", dtype="bfloat16")
    if "int8" not in run.s.skip:
        add_int8_encoder(run)
    spec = run.encoders["ours fp32"].spec
    run.tokenizer = run.encoders["ours fp32"].tokenizer
    run.report["model"] = {
        "document_length": spec.document_length,
        "query_length": spec.query_length,
        "do_query_expansion": spec.do_query_expansion,
        "dim": spec.dim,
    }


def add_int8_encoder(run: Run) -> None:
    """The int8 experiment: our fp32 encoder with the backbone's ``nn.Linear`` layers dynamically quantised.

    There is no public way to swap the backbone, so this reaches into ``ColBERTEncoder._model``: an experiment,
    not a library feature.
    """
    import torch

    from colbert_adapters.encoder import ColBERTEncoder

    try:
        enc8 = ColBERTEncoder.from_pretrained(run.checkpoint, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize = torch.ao.quantization.quantize_dynamic
            enc8._model = quantize(enc8._model, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]
            enc8.encode_documents(["int8 smoke test."], show_progress=False)
        run.encoders["ours int8"] = enc8
        run.notes.append(
            "`ours int8` = our fp32 encoder with `torch.ao.quantization.quantize_dynamic` applied to "
            "the backbone's nn.Linear layers (qint8 weights, dynamic per-tensor activations; "
            f"engine {torch.backends.quantized.engine}). torch.ao.quantization is deprecated (removal "
            "announced); an experiment, not a library feature."
        )
    except Exception as err:
        run.notes.append(f"int8 dynamic quantisation failed: {type(err).__name__}: {err}")
        log.warning("int8 dynamic quantisation failed: %s", err)


def make_texts(run: Run) -> None:
    """Seeded documents and queries (and their warm-up sets), written to ``_work/`` for the PyLate worker."""
    s, spec, tok = run.s, run.encoders["ours fp32"].spec, run.tokenizer
    rng = random.Random(s.seed)
    docs = [make_text(rng, tok, spec.document_length + rng.randint(5, 30)) for _ in range(s.n_docs)]
    queries = [make_text(rng, tok, spec.query_length + rng.randint(1, 6)) for _ in range(s.n_queries)]
    warm_docs = [make_text(rng, tok, spec.document_length + 10) for _ in range(4)]
    warm_queries = [make_text(rng, tok, spec.query_length + 2) for _ in range(5)]
    enc32 = run.encoders["ours fp32"]
    doc_tokens = enc32.count_tokens(docs)
    q_tokens = enc32.count_tokens(queries, is_query=True)
    run.report["texts"] = {
        "doc_tokens": {"min": min(doc_tokens), "max": max(doc_tokens), "mean": statistics.fmean(doc_tokens)},
        "query_tokens": {"min": min(q_tokens), "max": max(q_tokens), "mean": statistics.fmean(q_tokens)},
    }
    log.info(
        "texts: %d docs (%s tokens), %d queries (%s tokens)",
        s.n_docs,
        run.report["texts"]["doc_tokens"],
        s.n_queries,
        run.report["texts"]["query_tokens"],
    )
    chunks = [docs[i : i + s.batch_size] for i in range(0, s.n_docs, s.batch_size)]
    files = {"warm_docs": WORK / "warm_docs.json", "queries": WORK / "queries.json"}
    write_json(files["warm_docs"], warm_docs, indent=None, newline=False)
    write_json(files["queries"], queries, indent=None, newline=False)
    for j, ch in enumerate(chunks):
        files[f"chunk{j}"] = WORK / f"docs_chunk{j}.json"
        write_json(files[f"chunk{j}"], ch, indent=None, newline=False)
    run.texts = Texts(docs, queries, warm_docs, warm_queries, doc_tokens, chunks, files)


def start_pylate(run: Run) -> None:
    """Start the PyLate worker when its python exists; otherwise note that the reference columns are skipped."""
    python = run.s.pylate_python
    run.report["pylate_python"] = python or None
    if not run.s.pylate_found:
        run.notes.append(pylate_missing_note(python))
        log.warning("%s", pylate_missing_note(python))
        return
    try:
        log.info("starting the PyLate worker (%s)", python)
        run.worker = PyLateWorker(python, run.checkpoint, run.s.threads, run.env, WORK / "pylate_worker.log")
        run.report["pylate_versions"] = run.worker.ready["versions"]
        ready, spec = run.worker.ready, run.encoders["ours fp32"].spec
        if ready["document_length"] != spec.document_length or ready["do_query_expansion"] != spec.do_query_expansion:
            run.notes.append(f"settings differ: PyLate {ready}, ours {run.report['model']}")
    except Exception as err:
        run.notes.append(f"PyLate unavailable ({err}); reference columns skipped")
        log.warning("PyLate unavailable: %s", err)
        run.worker = None


def release_models(run: Run) -> None:
    """Stop the PyLate worker and free our models before the long-document processes start."""
    if run.worker:
        run.worker.close()
        run.worker = None
    run.encoders.clear()
    gc.collect()


def finish_run(run: Run) -> None:
    """Targets, then ``<out>.json`` and ``<out>.md``; prints the markdown."""
    rep, out = run.report, run.s.out
    rep["load_average"]["end"] = loadavg()
    rep["total_wall_s"] = time.perf_counter() - run.started
    rep["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    rep["targets"] = evaluate_targets(rep)
    md = render_markdown(rep)
    write_json(out.with_suffix(".json"), rep, indent=1, default=str)
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    log.info("wrote %s and %s", out.with_suffix(".md"), out.with_suffix(".json"))


# ---------------------------------------------------------------------------------------------- 1-2. throughput


def measure_throughput(run: Run) -> None:
    """Docs/s per config (batch-interleaved rounds), ratios against PyLate, then the fidelity of the outputs."""
    assert run.texts is not None
    tp, outputs, py_lengths, py_saved = throughput_rounds(run)
    throughput_rates(tp, run.s.n_docs, sum(run.texts.doc_tokens), run.s.repeats, run.s.threads)
    if run.worker:
        throughput_ratios(tp, list(run.encoders), run.s.repeats)
    run.report["throughput"] = tp
    run.report["load_average"]["after_throughput"] = loadavg()
    run.report["fidelity"] = fidelity(outputs, py_lengths if run.worker else None, py_saved)


def throughput_rounds(run: Run) -> tuple[dict[str, dict[str, Any]], dict[str, list[Any]], list[int], list[Path]]:
    """Times per (round, batch) for every config, and the last round's outputs (ours: vectors; PyLate: lengths and
    the ``.npy`` files its vectors went to).

    Interleaved at the granularity of one batch: for each round and each batch of ``batch_size`` documents, every
    config encodes that batch back to back, so all configs see the same load.
    """
    assert run.texts is not None
    chunks, repeats, configs = run.texts.chunks, run.s.repeats, run.configs
    nch = len(chunks)
    tp: dict[str, dict[str, Any]] = {
        c: {
            "chunk_wall_s": [[0.0] * nch for _ in range(repeats)],
            "chunk_cpu_s": [[0.0] * nch for _ in range(repeats)],
            "load1": [],
        }
        for c in configs
    }
    outputs: dict[str, list[Any]] = {c: [] for c in run.encoders}
    py_lengths: list[int] = []
    py_saved: list[Path] = []
    for c in configs:
        log.info("warm-up %s", c)
        run.encode_docs(c, "warm_docs", run.texts.warm_docs)
    for r in range(repeats):
        last = r == repeats - 1
        for j in range(nch):
            for c in run.rotated(r, j):
                save = WORK / f"pylate_docs_chunk{j}.npy" if c == "pylate" and last else None
                wall, cpu, res = run.encode_docs(c, f"chunk{j}", chunks[j], save)
                tp[c]["chunk_wall_s"][r][j] = wall
                tp[c]["chunk_cpu_s"][r][j] = cpu
                tp[c]["load1"].append(round(os.getloadavg()[0], 2))
                if last and c == "pylate":
                    py_lengths += res
                    py_saved.append(save)  # type: ignore[arg-type]
                elif last:
                    outputs[c] += res
        log.info(
            "round %d: %s (load %.2f)",
            r + 1,
            ", ".join(f"{c} {len(run.texts.docs) / sum(tp[c]['chunk_wall_s'][r]):.3f} docs/s" for c in configs),
            os.getloadavg()[0],
        )
    return tp, outputs, py_lengths, py_saved


def throughput_rates(tp: dict[str, dict[str, Any]], n_docs: int, n_tok: int, repeats: int, threads: int) -> None:
    """Per config: docs/s of each round, the best and median round, best per batch, and CPU-normalised."""
    for d in tp.values():
        nch = len(d["chunk_wall_s"][0])
        rounds = [sum(x) for x in d["chunk_wall_s"]]
        cpus = [sum(x) for x in d["chunk_cpu_s"]]
        d["round_wall_s"] = rounds
        d["docs_per_s_all"] = [n_docs / w for w in rounds]
        d["docs_per_s_best"] = n_docs / min(rounds)
        d["docs_per_s_median"] = n_docs / statistics.median(rounds)
        d["tokens_per_s_best"] = n_tok / min(rounds)
        # per batch, the fastest of the rounds, summed: an estimate for a quiet machine
        d["docs_per_s_best_per_batch"] = n_docs / sum(
            min(d["chunk_wall_s"][r][j] for r in range(repeats)) for j in range(nch)
        )
        # CPU-normalised: docs per (process CPU-seconds / threads): the rate on `threads` idle cores
        # if CPU time were unaffected by contention (OpenMP spin-waiting inflates it under load).
        d["docs_per_s_cpu_normalised_best"] = max(n_docs / (cs / threads) for cs in cpus)


def throughput_ratios(tp: dict[str, dict[str, Any]], ours: list[str], repeats: int) -> None:
    """Each of our configs against PyLate: the paired per-batch median (the primary number) and the round ratios."""
    py = tp["pylate"]
    py_t = py["chunk_wall_s"]
    nch = len(py_t[0])
    for c in ours:
        d = tp[c]
        paired = [py_t[r][j] / d["chunk_wall_s"][r][j] for r in range(repeats) for j in range(nch)]
        d["paired_ratios"] = paired
        d["ratio_vs_pylate_paired_median"] = statistics.median(paired)
        d["ratio_vs_pylate"] = d["docs_per_s_best"] / py["docs_per_s_best"]
        d["ratio_vs_pylate_median"] = d["docs_per_s_median"] / py["docs_per_s_median"]
        d["ratio_vs_pylate_best_per_batch"] = d["docs_per_s_best_per_batch"] / py["docs_per_s_best_per_batch"]
        d["ratio_vs_pylate_cpu_normalised"] = d["docs_per_s_cpu_normalised_best"] / py["docs_per_s_cpu_normalised_best"]


def fidelity(
    outputs: dict[str, list[Any]], py_lengths: list[int] | None, py_saved: list[Path]
) -> dict[str, dict[str, Any]]:
    """Ours fp32 against PyLate (token counts, max abs diff); the fast paths against ours fp32 (per-token cosine).

    ``py_lengths`` is None when PyLate did not run.
    """
    import numpy as np

    fid: dict[str, dict[str, Any]] = {}
    ref32 = outputs["ours fp32"]
    lengths32 = [len(v) for v in ref32]
    cat32 = np.concatenate(ref32)
    if py_lengths is not None:
        py = np.concatenate([np.load(p) for p in py_saved])
        same = py_lengths == lengths32
        fid["ours fp32"] = {
            "token_counts_identical": same,
            "n_token_vectors": int(cat32.shape[0]),
            "max_abs_diff_vs_pylate": float(np.abs(cat32 - py).max()) if same else None,
            "min_cosine_vs_pylate": float((cat32 * py).sum(1).min()) if same else None,
        }
        for c in outputs:
            if c != "ours fp32" and [len(v) for v in outputs[c]] == py_lengths:
                x = np.concatenate(outputs[c])
                fid.setdefault(c, {})["max_abs_diff_vs_pylate"] = float(np.abs(x - py).max())
                fid[c]["min_cosine_vs_pylate"] = float(
                    ((x * py).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(py, axis=1))).min()
                )
    for c, vs in outputs.items():
        if c == "ours fp32":
            continue
        same = [len(v) for v in vs] == lengths32
        entry = fid.setdefault(c, {})
        entry["token_counts_identical"] = same
        if same:
            x = np.concatenate(vs)
            cos = (x * cat32).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(cat32, axis=1))
            entry.update(
                min_cosine_vs_ours_fp32=float(cos.min()),
                mean_cosine_vs_ours_fp32=float(cos.mean()),
                p01_cosine_vs_ours_fp32=float(np.percentile(cos, 1)),
                max_abs_diff_vs_ours_fp32=float(np.abs(x - cat32).max()),
                share_tokens_cosine_below_0_999=float((cos < 0.999).mean()),
            )
    return fid


# ---------------------------------------------------------------------------------------------- 3. latency


def measure_latency(run: Run) -> None:
    """Single-query latency per config (query-interleaved rounds), ratios against PyLate, query fidelity."""
    lat, q_out = latency_rounds(run)
    for d in lat.values():
        t = d["times_ms"]
        d.update(
            p50_ms=percentile(t, 50), p90_ms=percentile(t, 90), mean_ms=statistics.fmean(t), min_ms=min(t), n=len(t)
        )
    if run.worker:
        latency_ratios(lat, list(run.encoders))
        run.report["fidelity_queries"] = query_fidelity(q_out)
    run.report["latency"] = lat
    run.report["load_average"]["after_latency"] = loadavg()


def latency_rounds(run: Run) -> tuple[dict[str, dict[str, Any]], dict[str, list[Any]]]:
    """Milliseconds per query and config, and the first round's vectors of PyLate and ours fp32.

    Interleaved per query: query i is encoded by every config back to back (rotating order).
    """
    import numpy as np

    assert run.texts is not None
    configs, queries, n_queries = run.configs, run.texts.queries, run.s.n_queries
    lat: dict[str, dict[str, Any]] = {c: {"times_ms": []} for c in configs}
    q_out: dict[str, list[Any]] = {"pylate": [], "ours fp32": []}

    def one_query(c: str, q: str, save: Path | None) -> float:
        if c == "pylate":
            assert run.worker is not None
            r = run.worker.call(op="query_one", text=q, save=str(save) if save else None)
            if save:
                q_out["pylate"].append(np.load(save))
            return float(r["wall_s"]) * 1000
        w0 = time.perf_counter()
        v = run.encoders[c].encode_queries([q], batch_size=1, show_progress=False)[0]
        ms = (time.perf_counter() - w0) * 1000
        if save and c == "ours fp32":
            q_out[c].append(v)
        return ms

    for k, q in enumerate(run.texts.warm_queries):
        for c in run.rotated(0, k):
            one_query(c, q, None)
    for r in range(run.s.repeats):
        for k, q in enumerate(queries):
            for c in run.rotated(r, k):
                save = WORK / "pylate_query.npy" if r == 0 else None
                lat[c]["times_ms"].append(one_query(c, q, save if c in ("pylate", "ours fp32") else None))
        log.info(
            "latency round %d: %s (load %.2f)",
            r + 1,
            ", ".join(f"{c} p50 {percentile(lat[c]['times_ms'][-n_queries:], 50):.1f} ms" for c in configs),
            os.getloadavg()[0],
        )
    return lat, q_out


def latency_ratios(lat: dict[str, dict[str, Any]], ours: list[str]) -> None:
    """PyLate / ours at p50 and p90, and the median of the per-query paired ratios."""
    py = lat["pylate"]
    for c in ours:
        d = lat[c]
        d["ratio_pylate_over_ours_p50"] = py["p50_ms"] / d["p50_ms"]
        d["ratio_pylate_over_ours_p90"] = py["p90_ms"] / d["p90_ms"]
        d["ratio_paired_median"] = statistics.median(p / o for p, o in zip(py["times_ms"], d["times_ms"], strict=True))


def query_fidelity(q_out: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    """Ours fp32 query vectors against PyLate's: token counts and max abs diff."""
    import numpy as np

    same = [len(x) for x in q_out["pylate"]] == [len(x) for x in q_out["ours fp32"]]
    diff = np.abs(np.concatenate(q_out["ours fp32"]) - np.concatenate(q_out["pylate"])).max() if same else None
    return {
        "ours fp32": {
            "token_counts_identical": same,
            "max_abs_diff_vs_pylate": None if diff is None else float(diff),
        }
    }


# ---------------------------------------------------------------------------------------------- 4. long documents


def measure_long_documents(run: Run) -> None:
    """One document per length, encoded by ours and PyLate, each in a fresh process under an address-space cap."""
    s = run.s
    cap_gib = s.mem_cap_gib if s.mem_cap_gib else min(22.0, meminfo().get("MemAvailable", 0) / GiB - 1.0)
    cap = int(cap_gib * GiB)
    longs: list[dict[str, Any]] = []
    run.report["long"] = {"mem_cap_gib": round(cap_gib, 2), "runs": longs}
    impls = ["ours"] + (["pylate"] if s.pylate_found else [])
    for length in s.long_lengths:
        text_path = WORK / f"long_{length}.txt"
        text_path.write_text(make_text(random.Random(s.seed + length), run.tokenizer, length + 64), encoding="utf-8")
        for impl in impls:
            longs.append(long_run(run, impl, length, text_path, cap))
        compare_long(longs, length)
    run.report["load_average"]["after_long"] = loadavg()


def long_run(run: Run, impl: str, length: int, text_path: Path, cap: int) -> dict[str, Any]:
    """One fresh-process encode of ``text_path`` by ``impl`` (ours or pylate), with its result and load."""
    result_path = WORK / f"long_{impl}_{length}.result.json"
    save = WORK / f"long_{impl}_{length}.npy"
    if save.exists():
        save.unlink()
    files = {"text": text_path, "result": result_path, "save": save}
    if impl == "ours":
        argv, timeout = ours_long_argv(run, length, files, cap), run.s.long_timeout_ours
    else:
        argv, timeout = pylate_long_argv(run, length, files, cap), run.s.long_timeout_pylate
    log.info("long document: %s, %d tokens (timeout %.0f s, RLIMIT_AS %.1f GiB)", impl, length, timeout, cap / GiB)
    load_before = loadavg()
    res = run_isolated(argv, run.env, timeout, result_path, WORK / f"long_{impl}_{length}.log")
    res.update(impl=impl, length=length, timeout_s=timeout, load_before=load_before, load_after=loadavg())
    log.info(
        "  -> %s, encode %s s, process %.1f s, peak RSS %.2f GiB",
        res.get("status"),
        fmt(res.get("encode_wall_s"), 1),
        res["process_wall_s"],
        (res["peak_rss_kib"] or 0) * 1024 / GiB,
    )
    return res


def ours_long_argv(run: Run, length: int, files: dict[str, Path], cap: int) -> list[str]:
    """``bench_encoder.py --long-worker SPEC``, with the spec written next to the other work files."""
    spec_path = WORK / f"long_ours_{length}.spec.json"
    spec = {
        "checkpoint": str(run.checkpoint),
        "length": length,
        "text": str(files["text"]),
        "threads": run.s.threads,
        "result": str(files["result"]),
        "save": str(files["save"]),
        "mem_cap_bytes": cap,
    }
    write_json(spec_path, spec, indent=None, newline=False)
    script = str(Path(__file__).resolve())
    return [sys.executable, script, "--threads", str(run.s.threads), "--long-worker", str(spec_path)]


def pylate_long_argv(run: Run, length: int, files: dict[str, Path], cap: int) -> list[str]:
    """``_pylate_worker.py long`` in PyLate's virtualenv."""
    return [
        run.s.pylate_python, str(HERE / "_pylate_worker.py"), "long",
        "--checkpoint", str(run.checkpoint), "--threads", str(run.s.threads), "--length", str(length),
        "--text", str(files["text"]), "--result", str(files["result"]), "--save", str(files["save"]),
        "--mem-cap-bytes", str(cap),
    ]  # fmt: skip


def compare_long(longs: list[dict[str, Any]], length: int) -> None:
    """When both finished at ``length``: are the rows the same, and how far apart are the vectors."""
    import numpy as np

    by = {r["impl"]: r for r in longs if r["length"] == length}
    if "pylate" in by and by["pylate"].get("status") == "ok" and by["ours"].get("status") == "ok":
        x = np.load(WORK / f"long_ours_{length}.npy")
        y = np.load(WORK / f"long_pylate_{length}.npy")
        by["ours"]["rows_identical_to_pylate"] = x.shape == y.shape
        if x.shape == y.shape:
            by["ours"]["max_abs_diff_vs_pylate"] = float(np.abs(x - y).max())


if __name__ == "__main__":
    sys.exit(main())
