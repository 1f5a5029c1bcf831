# ruff: noqa: E501  (the report is built from long markdown table rows)
"""The Voyager benchmark's markdown report and slimmed JSON (``bench_voyager.py --report-only``).

A PyLate run that was skipped (no PyLate interpreter) is recorded as ``{"skipped": reason, "n_docs", "n_tokens"}``;
its cells read "not run" and the targets that need it "n/a".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import percentile_ms as pct
from benchmarks._voyager_systems import CHECKED_DTYPES, INT8, LIGHT
from colbert_adapters.backends.voyager import VoyagerBackend

NOT_RUN = "not run"


def _ran(py: dict[str, Any] | None) -> bool:
    """Whether this PyLate run took place (it is absent or a stub when PyLate was skipped)."""
    return bool(py) and "skipped" not in py  # type: ignore[operator]


def write_report(R: dict[str, Any], out: Path, *, quick: bool) -> None:
    """Write ``voyager.md`` (``voyager-quick.md`` for a quick run) and the JSON without hit lists into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    lines = report_lines(R, quick=quick)
    name = "voyager-quick" if quick else "voyager"
    (out / f"{name}.md").write_text("\n".join(lines), encoding="utf-8")
    slim = json.loads(json.dumps(R, default=float))
    for v in slim.values():
        if isinstance(v, dict):
            v.pop("results", None)
    (out / f"{name}.json").write_text(json.dumps(slim, indent=1), encoding="utf-8")
    print("\n".join(lines))


def report_lines(R: dict[str, Any], *, quick: bool) -> list[str]:
    """The report: run and settings, targets, store ceilings, int8 profile, synthetic, real vectors, growth."""
    nt_big = R["syn_pylate"]["n_tokens"]
    return [
        *_header(R, quick),
        "## Targets",
        "",
        "| measure | ours | PyLate | ratio | target | status |",
        "|---|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in _targets(R)],
        "",
        *_store_checks(R, nt_big),
        *_int8_lines(R, nt_big, R["syn1k_pylate"]["n_tokens"], R["real_info"]["n_tokens"]),
        *_synthetic_section(R),
        *_real_section(R),
        *_growth_section(R),
        "",
        "Command: `python benchmarks/bench_voyager.py" + (" --quick" if quick else "") + "` (it sets "
        "OPENBLAS_NUM_THREADS=1 itself when unset, torch keeps its default threads; `--report-only results/voyager.json` rebuilds this file from the JSON).",
        "",
    ]


def _header(R: dict[str, Any], quick: bool) -> list[str]:
    so, sp = R["syn_ours"], R["syn_pylate"]
    pylate = (
        f"PyLate {sp['versions'].get('pylate', '?')} with voyager {sp['versions'].get('voyager', '?')} in its own venv"
        if _ran(sp)
        else f"PyLate not run ({sp['skipped']})"
    )
    return [
        "# Voyager backend benchmark" + (" (QUICK RUN: sizes reduced, numbers not meaningful)" if quick else ""),
        "",
        f"Run {R['started']} - {R['finished']}; {R['machine'].get('cpu_model', 'CPU')}, "
        f"{R['machine']['cpus']} CPUs shared with other jobs; load average "
        f"(1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in R['machine']['load_start'])}, at end "
        f"{'/'.join(f'{x:.1f}' for x in R['machine']['load_end'])}; numpy BLAS threads for ours and the exact backend: "
        f"{R['machine'].get('blas_threads')}. {pylate}; ours with the default settings "
        f"(M={so['settings']['M']}, ef_construction={so['settings']['ef_construction']}"
        + (
            f" ({so['settings']['ef_construction_large']} for segments over "
            f"{VoyagerBackend.LARGE_SEGMENT_TOKENS:,} tokens)"
            if so["settings"].get("ef_construction_large")
            else ""
        )
        + f", graphs over {so['settings'].get('graph_dim') or 'all'} of 128 dimensions (real vectors: "
        f"{R['real_ours_float8']['settings'].get('graph_dim') or 'all'} of 384), graph storage "
        f"{so['settings']['storage_data_type']}, store vectors {so['settings'].get('vector_dtype', 'float16')}, "
        f"k_token={VoyagerBackend.DEFAULT_K_TOKEN}, ef_search={VoyagerBackend.DEFAULT_EF_SEARCH}, "
        f"n_rerank={VoyagerBackend.DEFAULT_N_RERANK}, exact_below_tokens={VoyagerBackend.DEFAULT_EXACT_BELOW_TOKENS:,}). "
        "PyLate with its defaults (M=64, ef_construction=200, ef_search=200, k_token=100). Every system indexes the "
        "same precomputed vectors; PyLate is measured at the issue's size (10,000 documents x 100 tokens) and at "
        "1,000 documents. Right after indexing, every system answers as many warm-up queries as are timed (token "
        "vectors drawn from its own documents; reported as 'first queries after indexing'), then the timed queries.",
        "",
    ]


# ---------------------------------------------------------------------------------------------- targets


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _off(run: dict[str, Any]) -> str:
    """The p50 of the same queries without the blob cache (every candidate read from SQLite)."""
    cold = run.get("query_times_cache_off_s")
    if not cold:
        return ""
    same = "" if run.get("cache_off_same_results") else ", RESULTS DIFFER"
    return f"; cache off {pct(cold, 50):.1f}{same}"


def _first(run: dict[str, Any], digits: int = 1) -> str:
    """The p50 of the warm-up queries answered right after indexing (before the timed ones)."""
    warm = run.get("warmup_times_s")
    return f"; first queries after indexing {pct(warm, 50):,.{digits}f}" if warm else ""


def _rec_ok(ours: float, theirs: float) -> bool:
    return ours >= 0.95 and ours >= theirs


def _vs(
    measure: str,
    ours: str,
    py: dict[str, Any],
    theirs: Callable[[], str],
    ratio: Callable[[], str],
    target: str,
    status: Callable[[], str],
) -> tuple[str, ...]:
    """A targets row; the PyLate cells (callables, since they read PyLate's numbers) only where PyLate ran."""
    if not _ran(py):
        return (measure, ours, NOT_RUN, "-", target, "n/a")
    return (measure, ours, theirs(), ratio(), target, status())


def _targets(R: dict[str, Any]) -> list[tuple[str, ...]]:
    """(a) bulk add, (b) single add, (c) query latency, (d) recall, (e) bytes and resident memory, vs PyLate."""
    so, s1o, ro = R["syn_ours"], R["syn1k_ours"], R["real_ours_float8"]
    sp, s1p, rp = R["syn_pylate"], R["syn1k_pylate"], R["real_pylate"]
    nt_big, nt_small, real_nt = sp["n_tokens"], s1p["n_tokens"], R["real_info"]["n_tokens"]
    ours_vps, ours1k_vps = nt_big / so["bulk_add_s"], nt_small / s1o["bulk_add_s"]
    ours_single, ours1k_single = float(np.median(so["single_add_s"])), float(np.median(s1o["single_add_s"]))
    ours_p50, ours_p95 = pct(so["query_times_s"], 50), pct(so["query_times_s"], 95)
    o1_p50, o1_p95 = pct(s1o["query_times_s"], 50), pct(s1o["query_times_s"], 95)
    r_p50 = pct(ro["query_times_s"], 50)
    ours_bpt = so["disk_bytes"] / nt_big
    rss = so.get("rss", {})
    ours_rss_mib = (rss.get("rss_after_queries_kib", 0) - rss.get("rss_base_kib", 0)) / 1024

    def vps(py: dict[str, Any], nt: int) -> float:
        return nt / py["bulk_add_s"]  # type: ignore[no-any-return]

    def p50(py: dict[str, Any]) -> float:
        return pct(py["query_times_s"], 50)

    def rss_mib(py: dict[str, Any]) -> float:
        return (py["rss_kib"] - py["rss_base_kib"]) / 1024  # type: ignore[no-any-return]

    ours_heap = (
        f"; heap {(rss['anon_after_queries_kib'] - rss['anon_base_kib']) / 1024:,.0f} MiB ({(rss['anon_after_queries_kib'] - rss['anon_base_kib']) * 1024 / nt_big:,.0f} B/token), the rest file-backed page cache"
        if "anon_after_queries_kib" in rss
        else ""
    )
    return [
        _vs("(a) bulk add, token vectors/s, 10k docs", f"{ours_vps:,.0f}", sp, lambda: f"{vps(sp, nt_big):,.0f}",
            lambda: f"{ours_vps / vps(sp, nt_big):.1f}x", ">= 10x", lambda: _met(ours_vps / vps(sp, nt_big) >= 10)),
        _vs("(a) same, 1k docs", f"{ours1k_vps:,.0f}", s1p, lambda: f"{vps(s1p, nt_small):,.0f}",
            lambda: f"{ours1k_vps / vps(s1p, nt_small):.1f}x", ">= 10x", lambda: _met(ours1k_vps / vps(s1p, nt_small) >= 10)),
        _vs("(b) add 1 document to the 10k-doc index", f"{ours_single * 1e3:.1f} ms", sp, lambda: f"{sp['single_add_s'] * 1e3:,.0f} ms",
            lambda: f"{sp['single_add_s'] / ours_single:,.0f}x", ">= 100x and < 100 ms",
            lambda: _met(sp["single_add_s"] / ours_single >= 100 and ours_single < 0.1)),
        _vs("(b) same, 1k-doc index", f"{ours1k_single * 1e3:.1f} ms", s1p, lambda: f"{s1p['single_add_s'] * 1e3:,.0f} ms",
            lambda: f"{s1p['single_add_s'] / ours1k_single:,.0f}x", ">= 100x and < 100 ms",
            lambda: _met(s1p["single_add_s"] / ours1k_single >= 100 and ours1k_single < 0.1)),
        _vs("(c) query p50 (p95), 32 tokens, top 10, 10k docs", f"{ours_p50:.1f} ({ours_p95:.1f}) ms{_off(so)}{_first(so)}", sp,
            lambda: f"{p50(sp):,.0f} ({pct(sp['query_times_s'], 95):,.0f}) ms{_first(sp, 0)}",
            lambda: f"{p50(sp) / ours_p50:.0f}x", ">= 20x", lambda: _met(p50(sp) / ours_p50 >= 20)),
        _vs("(c) same, 1k docs", f"{o1_p50:.1f} ({o1_p95:.1f}) ms{_off(s1o)}{_first(s1o)}", s1p,
            lambda: f"{p50(s1p):,.0f} ({pct(s1p['query_times_s'], 95):,.0f}) ms{_first(s1p, 0)}",
            lambda: f"{p50(s1p) / o1_p50:.0f}x", ">= 20x", lambda: _met(p50(s1p) / o1_p50 >= 20)),
        _vs(f"(c) same, real MiniLM vectors, {R['real_info']['n_docs']:,} docs", f"{r_p50:.1f} ({pct(ro['query_times_s'], 95):.1f}) ms{_off(ro)}{_first(ro)}", rp,
            lambda: f"{p50(rp):,.0f} ({pct(rp['query_times_s'], 95):,.0f}) ms{_first(rp, 0)}",
            lambda: f"{p50(rp) / r_p50:.0f}x", ">= 20x", lambda: _met(p50(rp) / r_p50 >= 20)),
        _vs("(d) recall@10 vs exact MaxSim, 10k docs", f"{so['recall_at_10']:.3f}", sp, lambda: f"{sp['recall_at_10']:.3f}",
            lambda: "", ">= 0.95 and >= PyLate", lambda: _met(_rec_ok(so["recall_at_10"], sp["recall_at_10"]))),
        _vs("(d) same, 1k docs", f"{s1o['recall_at_10']:.3f}", s1p, lambda: f"{s1p['recall_at_10']:.3f}",
            lambda: "", ">= 0.95 and >= PyLate", lambda: _met(_rec_ok(s1o["recall_at_10"], s1p["recall_at_10"]))),
        _vs("(d) same, real MiniLM vectors", f"{ro['recall_at_10']:.3f}", rp, lambda: f"{rp['recall_at_10']:.3f}",
            lambda: "", ">= 0.95 and >= PyLate", lambda: _met(_rec_ok(ro["recall_at_10"], rp["recall_at_10"]))),
        _vs("(e) disk bytes/token, 128-d, 10k docs", f"{ours_bpt:,.0f}", sp, lambda: f"{sp['disk_bytes'] / nt_big:,.0f}",
            lambda: f"{ours_bpt / (sp['disk_bytes'] / nt_big):.0%}", "<= 50%", lambda: _met(ours_bpt / (sp["disk_bytes"] / nt_big) <= 0.5)),
        _vs("(e) disk bytes/token, 384-d real", f"{ro['disk_bytes'] / real_nt:,.0f}", rp, lambda: f"{rp['disk_bytes'] / real_nt:,.0f}",
            lambda: f"{ro['disk_bytes'] / rp['disk_bytes']:.0%}", "<= 50%", lambda: _met(ro["disk_bytes"] / rp["disk_bytes"] <= 0.5)),
        _vs("(e) resident memory (index + 100 queries), 10k docs", f"{ours_rss_mib:,.0f} MiB ({ours_rss_mib * 2**20 / nt_big:,.0f} B/token)" + ours_heap, sp,
            lambda: f"{rss_mib(sp):,.0f} MiB ({rss_mib(sp) * 2**20 / nt_big:,.0f} B/token)",
            lambda: f"{ours_rss_mib / rss_mib(sp):.0%}", "(reported)", lambda: ""),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------- sections


def _store_checks(R: dict[str, Any], nt_big: int) -> list[str]:
    checks = [
        (f"{where}, {vdt}", R[f"{key}_check_{vdt}"])
        for where, key in ((f"synthetic {nt_big // 100:,} docs", "syn"), ("real MiniLM", "real"))
        for vdt in CHECKED_DTYPES
        if f"{key}_check_{vdt}" in R
    ]
    return [
        "What the stored vectors cost (exact MaxSim over every document on the vectors as the store keeps them, "
        "against float32 exact MaxSim; this is the ceiling of our recall, whatever the graph finds):",
        "",
        "| data, store encoding | recall@10 vs float32 | max abs score diff | mean abs score diff |",
        "|---|---|---|---|",
        *[
            f"| {name} | {c['recall_at_10_vs_fp32']:.3f} | {c['max_abs_score_diff']:.1e} | {c['mean_abs_score_diff']:.1e} |"
            for name, c in checks
        ],
        "",
    ]


def _int8() -> str:
    return ", ".join(f"{k}={v}" for k, v in INT8.items())


def _light() -> str:
    return ", ".join(f"{k}={v}" for k, v in LIGHT.items())


def _int8_lines(R: dict[str, Any], nt_big: int, nt_small: int, real_nt: int) -> list[str]:
    """The targets under the int8 profile (the former defaults), against the same PyLate runs."""
    rows = [
        ("10k docs", R.get("syn_ours_int8"), R["syn_pylate"], nt_big),
        ("1k docs", R.get("syn1k_ours_int8"), R["syn1k_pylate"], nt_small),
        ("real MiniLM", R.get("real_ours_int8"), R["real_pylate"], real_nt),
    ]
    out = [
        "The int8 profile (the former defaults: `vector_dtype='int8'`, `k_token=64`, `ef_search=64`, default graphs) "
        "against the same PyLate runs:",
        "",
        "| data | query p50 (p95) ms | (c) ratio | recall@10 (PyLate) | (d) | disk B/token (PyLate) | (e) | bulk add vectors/s (a) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, ours, py, nt in rows:
        if not ours:
            continue
        o50, rec, bpt = pct(ours["query_times_s"], 50), ours["recall_at_10"], ours["disk_bytes"] / nt
        if not _ran(py):
            out.append(
                f"| {name} | {o50:.1f} ({pct(ours['query_times_s'], 95):.1f}) | - | {rec:.3f} (-) | - | {bpt:,.0f} (-) "
                f"| - | {nt / ours['bulk_add_s']:,.0f} |"
            )
            continue
        p50, prec, pbpt = pct(py["query_times_s"], 50), py["recall_at_10"], py["disk_bytes"] / nt
        out.append(
            f"| {name} | {o50:.1f} ({pct(ours['query_times_s'], 95):.1f}) | {p50 / o50:.0f}x "
            f"({'met' if p50 / o50 >= 20 else 'not met'}) | {rec:.3f} ({prec:.3f}) | "
            f"{'met' if rec >= 0.95 and rec >= prec else 'not met'} | {bpt:,.0f} ({pbpt:,.0f}) | {bpt / pbpt:.0%} "
            f"({'met' if bpt / pbpt <= 0.5 else 'not met'}) | {nt / ours['bulk_add_s']:,.0f} "
            f"({nt / ours['bulk_add_s'] / (nt / py['bulk_add_s']):.1f}x) |"
        )
    return [*out, ""] if len(out) > 4 else []


def _incremental_lines(R: dict[str, Any], nt_big: int, bulk_vps: float) -> list[str]:
    inc = R.get("syn_ours_incremental")
    if not inc:
        return []
    vps = nt_big / inc["add_s"]
    return [
        "",
        f"Incremental writes: the same {nt_big // 100:,} documents written in {inc['n_upserts']} upserts of "
        f"{inc['batch_docs']} documents take {inc['add_s']:.1f} s ({vps:,.0f} vectors/s, {vps / bulk_vps:.0%} of the "
        f"bulk rate; every write durable), ending with {inc['n_segments']} sealed segment(s) + "
        f"{inc['mutable_tokens']:,} tokens in the mutable segment; query p50 {pct(inc['query_times_s'], 50):.1f} ms, "
        f"recall@10 {inc['recall_at_10']:.3f}.",
    ]


def _ours_row(label: str, nt: int, run: dict[str, Any]) -> str:
    """A row of the synthetic table for one of our configurations."""
    return f"| {label} | {nt // 100:,} | {nt:,} | {run['bulk_add_s']:.1f} | {nt / run['bulk_add_s']:,.0f} | {float(np.median(run['single_add_s'])) * 1e3:.1f} | {pct(run['query_times_s'], 50):.1f} | {pct(run['query_times_s'], 95):.1f} | {run['recall_at_10']:.3f} | {run['disk_bytes'] / nt:,.0f} |"


def _pylate_row(nt: int, py: dict[str, Any]) -> str:
    """PyLate's row of the synthetic table."""
    if not _ran(py):
        return f"| PyLate Voyager | {nt // 100:,} | {nt:,} | {NOT_RUN} | - | - | - | - | - | - |"
    return f"| PyLate Voyager | {nt // 100:,} | {nt:,} | {py['bulk_add_s']:.1f} | {nt / py['bulk_add_s']:,.0f} | {py['single_add_s'] * 1e3:,.0f} | {pct(py['query_times_s'], 50):,.0f} | {pct(py['query_times_s'], 95):,.0f} | {py['recall_at_10']:.3f} | {py['disk_bytes'] / nt:,.0f} |"


def _synthetic_section(R: dict[str, Any]) -> list[str]:
    so, sm, s1o, s1m = R["syn_ours"], R["syn_memory"], R["syn1k_ours"], R["syn1k_memory"]
    sp, s1p = R["syn_pylate"], R["syn1k_pylate"]
    nt_big, nt_small = sp["n_tokens"], s1p["n_tokens"]
    rss = so.get("rss", {})
    variants = [
        ("ours, float16 vectors in the store", R.get("syn_ours_fp16")),
        (f"ours, int8 profile ({_int8()})", R.get("syn_ours_int8")),
        ("ours, full-dimension graphs (graph_dim=128)", R.get("syn_ours_full")),
        (f"ours, light settings ({_light()})", R["syn_ours_light"]),
    ]
    pylate_rss = (
        f"PyLate process (10k docs): {sp['rss_base_kib'] / 1024:,.0f} MiB after imports and data, "
        f"{sp['rss_kib'] / 1024:,.0f} MiB after indexing and queries."
        if _ran(sp)
        else f"PyLate process: {NOT_RUN}."
    )
    return [
        "## Synthetic 128-d (clustered random unit vectors), 100 queries x 32 tokens, top 10",
        "",
        "| system | docs | vectors | bulk add s | vectors/s | add 1 doc ms | query p50 ms | p95 ms | recall@10 | disk B/token |",
        "|---|---|---|---|---|---|---|---|---|---|",
        _ours_row("ours", nt_big, so),
        *[_ours_row(label, nt_big, run) for label, run in variants if run],
        f"| exact MemoryBackend | {nt_big // 100:,} | {nt_big:,} | {sm['bulk_add_s']:.1f} | {nt_big / sm['bulk_add_s']:,.0f} | - | {pct(sm['query_times_s'], 50):.1f} | {pct(sm['query_times_s'], 95):.1f} | 1.000 | (memory only, {sm['bytes_per_token_mem']} B/token) |",
        _pylate_row(nt_big, sp),
        _ours_row("ours", nt_small, s1o),
        f"| exact MemoryBackend | {nt_small // 100:,} | {nt_small:,} | {s1m['bulk_add_s']:.2f} | {nt_small / s1m['bulk_add_s']:,.0f} | - | {pct(s1m['query_times_s'], 50):.1f} | {pct(s1m['query_times_s'], 95):.1f} | 1.000 | - |",
        _pylate_row(nt_small, s1p),
        *_incremental_lines(R, nt_big, nt_big / so["bulk_add_s"]),
        "",
        f"Ours at 10k docs: {so['n_segments']} segment(s); graph {so['segment_bytes_per_token']:,.0f} B/token + SQLite "
        f"({so['settings'].get('vector_dtype', 'float16')} vectors, text, metadata) {so['sqlite_bytes_per_token']:,.0f} B/token. Resident memory of a fresh "
        f"read-only process: {rss.get('rss_base_kib', 0) / 1024:,.0f} MiB after imports, "
        f"{rss.get('rss_open_kib', 0) / 1024:,.0f} MiB after opening, {rss.get('rss_after_queries_kib', 0) / 1024:,.0f} "
        f"MiB after the queries{_anon_note(rss)}. {pylate_rss}",
        "",
    ]


def _anon_note(rss: dict[str, Any]) -> str:
    if "anon_after_queries_kib" not in rss:
        return ""
    return (
        f" ({(rss['anon_after_queries_kib'] - rss['anon_base_kib']) / 1024:,.0f} MiB of it heap above the baseline; "
        f"{rss['file_after_queries_kib'] / 1024:,.0f} MiB file-backed: the memory-mapped SQLite store and shared "
        "libraries, i.e. shared, reclaimable page cache)"
    )


def _real_section(R: dict[str, Any]) -> list[str]:
    info, rp, rm = R["real_info"], R["real_pylate"], R["real_memory"]
    real_nt = info["n_tokens"]
    lines = [
        f"## Real vectors: all-MiniLM-L6-v2, {info['n_docs']:,} Cranfield documents ({real_nt:,} tokens, "
        f"384-d), {info['n_queries']} queries (mean {info['mean_query_tokens']:.1f} tokens), top 10",
        "",
        "| system | storage in graph | store vectors | bulk add vectors/s | query p50 ms | p95 ms | recall@10 | graph B/token | disk B/token |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    variants = [("float8", "", R["real_ours_float8"])]
    if "real_ours_fp16" in R:
        variants.append(("float8", "", R["real_ours_fp16"]))
    variants += [("float32", "", R["real_ours_float32"]), ("e4m3", "", R["real_ours_e4m3"])]
    if "real_ours_full" in R:
        variants.append(("float8", ", full-dimension graphs (graph_dim=384)", R["real_ours_full"]))
    if "real_ours_int8" in R:
        variants.append(("float8", f", int8 profile ({_int8()})", R["real_ours_int8"]))
    variants.append(("float8", f", light settings ({_light()})", R["real_ours_light"]))
    for i, (storage, note, r) in enumerate(variants):
        lines.append(
            f"| ours{' (default)' if i == 0 else note} | {storage} | {r['settings'].get('vector_dtype', 'float16')} | "
            f"{real_nt / r['bulk_add_s']:,.0f} | {pct(r['query_times_s'], 50):.1f} | {pct(r['query_times_s'], 95):.1f} | "
            f"{r['recall_at_10']:.3f} | {r['segment_bytes_per_token']:,.0f} | {r['disk_bytes'] / real_nt:,.0f} |"
        )
    lines.append(
        f"| exact MemoryBackend | - | float32 | {real_nt / rm['bulk_add_s']:,.0f} | {pct(rm['query_times_s'], 50):.1f} | {pct(rm['query_times_s'], 95):.1f} | 1.000 | - | - |"
    )
    if _ran(rp):
        lines.append(
            f"| PyLate Voyager | float32 | float32 | {real_nt / rp['bulk_add_s']:,.0f} | {pct(rp['query_times_s'], 50):,.0f} | {pct(rp['query_times_s'], 95):,.0f} | {rp['recall_at_10']:.3f} | - | {rp['disk_bytes'] / real_nt:,.0f} |"
        )
    else:
        lines.append(f"| PyLate Voyager | float32 | float32 | {NOT_RUN} | - | - | - | - | - |")
    return [*lines, ""]


def _growth_section(R: dict[str, Any]) -> list[str]:
    lines = [
        "## Query latency growth (synthetic 128-d, 20 tokens per document, max(4096, docs/2) topics, 30 queries x 32 tokens, top 10)",
        "",
        "| docs | vectors | ours p50 ms | ours p95 ms | exact p50 ms | exact p95 ms | ours recall@10 | ours bulk add vectors/s | graph ef_construction |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {g['n_docs']:,} | {g['n_vectors']:,} | {g['ours_p50_ms']:.1f} | {g['ours_p95_ms']:.1f} | {g['memory_p50_ms']:.1f} | "
            f"{g['memory_p95_ms']:.1f} | {g['ours_recall_at_10']:.3f} | {g['ours_bulk_add_vectors_per_s']:,.0f} | "
            f"{'/'.join(map(str, g.get('ours_segment_beams') or [])) or '-'} |"
            for g in R["growth"]
        ],
    ]
    big = R["growth"][-1]
    if big.get("ours_rss"):
        r = big["ours_rss"]
        lines += [
            "",
            f"At {big['n_vectors']:,} token vectors, a fresh read-only process holds "
            f"{(r['rss_after_queries_kib'] - r['rss_base_kib']) / 1024:,.0f} MiB above its "
            f"{r['rss_base_kib'] / 1024:,.0f} MiB baseline after opening the index and running the queries.",
        ]
    return lines
