#!/usr/bin/env python3
"""Regenerate the PyLate 1.6.0 golden outputs in ``tests/golden/*.npz``.

Run with the PyLate reference virtualenv (NOT the project's test environment)::

    HF_HUB_OFFLINE=1 /work/venvs/pylate/bin/python tests/golden/make_goldens.py

The checkpoints are built with ``tests/fixtures/checkpoints.py`` (imported by file path; it
needs only numpy + safetensors) in a temporary directory, encoded with
``pylate.models.ColBERT`` on CPU, and every case is written to its own ``<case>.npz``
(format: ``tests/golden/README.md``).  Only numeric arrays and 0-d unicode strings are stored,
so ``np.load(path)`` works with the default ``allow_pickle=False``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FORMAT_VERSION = 1


def _load_builder():
    path = ROOT / "tests" / "fixtures" / "checkpoints.py"
    spec = importlib.util.spec_from_file_location("colbert_adapters_test_checkpoints", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


ckpts = _load_builder()

# ------------------------------------------------------------------------------------------
# texts
# ------------------------------------------------------------------------------------------
LONG_QUERY = (
    "Explain in detail how late interaction retrieval models compare every query token with "
    "every document token, why the maximum similarity is summed over the query, and what "
    "happens to the tokens beyond the thirty-second position of a very long question like this one"
)

QUERIES = [
    "hello",
    "What is the capital of France?",
    LONG_QUERY,  # > 32 tokens: truncated to [CLS] [Q] + 29 tokens + [SEP]
    "",  # -> [CLS] [Q] [SEP]
    "   ",  # whitespace only: stripped to "" by sentence-transformers
    "  leading and trailing whitespace   ",
    "\ttabs\nand newlines\n",
    "Café naïve résumé à la crème brûlée",
    "東京の天気はどうですか？",  # noqa: RUF001
    "emoji 🚀🔥 test 👍🏽",
    "Ünïcödé — “curly quotes”, ‘apostrophes’ … ellipsis",  # noqa: RUF001
    "The capital of France is [MASK].",  # [MASK] in the text is the special token 50284
    "[Q] literal prefix and [D] too",  # "[Q] " / "[D] " in the text become the prefix ids
    "x = f(1, 2) + 3.14; y = [a, b]",
]

# queries for the query-expansion cases (32 rows each; fewer texts to keep the files small)
EXPANSION_QUERIES = [
    "hello",
    "What is the capital of France?",
    LONG_QUERY,
    "",
    "  Café 東京 🚀  ",
    "x = f(1, 2) + 3.14; y = [a, b]",
]

_WORDS = (  # noqa: SIM905
    "the retrieval model encodes each token of the document into a small vector and the "
    "query tokens are matched against them with the maximum similarity operator while "
    "punctuation such as commas, full stops and colons: is removed (mostly). Numbers 42 and "
    "3.14 stay; so do words like naïve, café and 東京."
).split()
LONG_DOCUMENT = " ".join(_WORDS[i % len(_WORDS)] for i in range(1000))  # 1000 words >> 300 tokens
MEDIUM_DOCUMENT = " ".join(_WORDS[(7 * i) % len(_WORDS)] for i in range(120))

DOCUMENTS = [
    "Hello, world! This is a test.",  # "," "!" "." dropped
    'He said "yes" (twice) - then left.',  # Ġ" Ġ( Ġ- kept; " ) . dropped
    "Wait... what?! Really: yes; no. [see note] {ok} a/b",  # ... ?! Ġ[ Ġ{ kept; : ; . ] } / dropped
    "",  # -> [CLS] [D] [SEP]
    ".,;:!?",  # punctuation only: ".," is one (kept) token, ; : ! ? dropped
    "!!! ... ,,, ;;; ::: ???",  # punctuation only, all multi-char tokens: all kept
    '- ( " [ { < = > @ # $ % & * + ~ ^ _ | \\ `',  # bare "-" dropped, Ġ-prefixed ones kept
    "   padded document text   ",
    "Café au lait à Paris — déjà vu.",
    "東京は日本の首都です。",
    "Emoji party 🎉🎉 with 👨‍👩‍👧 family!",
    "The capital of France is [MASK].",
    MEDIUM_DOCUMENT,
    LONG_DOCUMENT,  # truncated to 300 ids ([CLS] [D] 297 tokens [SEP])
]

POOL_DOCUMENTS = [
    MEDIUM_DOCUMENT,
    "Hello, world! This is a test of token pooling with a handful of words in it.",
    LONG_DOCUMENT,
    "short",
]

# long-context case: sliding window of 16 (|i-j| <= 8) and document_length 1024
LONG_CONTEXT_DOCUMENTS = [
    " ".join(_WORDS[(3 * i) % len(_WORDS)] for i in range(300)),
    "A short document padded next to the long one.",
]

# ------------------------------------------------------------------------------------------
# checkpoints (build_checkpoint keyword arguments) and cases
# ------------------------------------------------------------------------------------------
CHECKPOINTS = {
    "base": {"layout": "hub", "seed": 0},
    "expansion": {"layout": "hub", "seed": 0, "query_expansion": True},
    "window16": {"layout": "hub", "seed": 0, "local_attention": 16},
}

# name -> (checkpoint, kind, texts, pylate constructor overrides, encode kwargs)
CASES = {
    "queries": ("base", "query", QUERIES, {}, {"batch_size": 32}),
    "queries_expansion": ("expansion", "query", EXPANSION_QUERIES, {}, {"batch_size": 32}),
    "queries_expansion_attend": (
        "expansion",
        "query",
        EXPANSION_QUERIES,
        {"attend_to_expansion_tokens": True},
        {"batch_size": 32},
    ),
    "documents": ("base", "document", DOCUMENTS, {}, {"batch_size": 32}),
    "documents_bs1": ("base", "document", DOCUMENTS, {}, {"batch_size": 1}),
    "documents_bs3": ("base", "document", DOCUMENTS, {}, {"batch_size": 3}),
    "documents_len64": ("base", "document", DOCUMENTS, {"document_length": 64}, {"batch_size": 32}),
    "documents_pool2": ("base", "document", POOL_DOCUMENTS, {}, {"batch_size": 32, "pool_factor": 2}),
    "documents_window16_len1024": (
        "window16",
        "document",
        LONG_CONTEXT_DOCUMENTS,
        {"document_length": 1024},
        {"batch_size": 32},
    ),
}


# ------------------------------------------------------------------------------------------
def _concat(arrays, dtype, width=None):
    if arrays:
        return np.ascontiguousarray(np.concatenate([np.asarray(a, dtype=dtype) for a in arrays]))
    return np.zeros((0,) if width is None else (0, width), dtype=dtype)


def _offsets(lengths):
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _raw_tokens(model, texts, is_query, batch_size, do_query_expansion):
    """ids / attention mask / keep mask per text, with PyLate's batch padding removed.

    PyLate pads on the right to the longest text of the batch; those positions have
    attention 0 and keep False.  With query expansion the 32 positions are the model's input
    (the [MASK] padding *is* the expansion), so nothing is trimmed."""
    raw = model.encode(texts, is_query=is_query, batch_size=batch_size, output_value=None, show_progress_bar=False)
    ids, att, keep = [], [], []
    for i, a, k in zip(raw["input_ids"], raw["attention_mask"], raw["masks"], strict=True):
        i, a, k = np.asarray(i, np.int64), np.asarray(a, np.int64), np.asarray(k, bool)
        if not (is_query and do_query_expansion):
            n = int(a.sum())
            assert a[:n].all() and not a[n:].any() and not k[n:].any(), "expected right padding"
            i, a, k = i[:n], a[:n], k[:n]
        ids.append(i)
        att.append(a)
        keep.append(k)
    return raw, ids, att, keep


def run_case(name, model, ckpt_args, digest, kind, texts, overrides, encode_kwargs, versions):
    is_query = kind == "query"
    batch_size = encode_kwargs["batch_size"]
    pool_factor = encode_kwargs.get("pool_factor", 1)
    emb = model.encode(
        texts, is_query=is_query, batch_size=batch_size, pool_factor=pool_factor, show_progress_bar=False
    )
    emb = [np.asarray(e, dtype=np.float32) for e in emb]
    raw, ids, att, keep = _raw_tokens(model, texts, is_query, batch_size, model.do_query_expansion)
    if pool_factor == 1:
        for e, te, k in zip(emb, raw["token_embeddings"], raw["masks"], strict=True):
            np.testing.assert_allclose(np.asarray(te)[np.asarray(k, bool)], e, atol=1e-6)
            assert e.shape[0] == int(np.asarray(k, bool).sum())

    lengths = np.array([e.shape[0] for e in emb], dtype=np.int64)
    id_lengths = np.array([len(i) for i in ids], dtype=np.int64)
    encoder_kwargs = {
        "query_length": overrides.get("query_length"),
        "document_length": overrides.get("document_length"),
        "do_query_expansion": overrides.get("do_query_expansion"),
        "attend_to_expansion_tokens": overrides.get("attend_to_expansion_tokens"),
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "case": name,
        "kind": kind,
        "n_texts": len(texts),
        "checkpoint": {"build_args": ckpt_args, "weights_digest": digest},
        "pylate_constructor_overrides": overrides,
        "pylate_encode_kwargs": {"is_query": is_query, **encode_kwargs},
        "encoder_from_pretrained_kwargs": encoder_kwargs,
        "encoder_call": {
            "method": "encode_queries" if is_query else "encode_documents",
            "kwargs": {"batch_size": batch_size, **({"pool_factor": pool_factor} if not is_query else {})},
        },
        "resolved": {
            "query_prefix": model.query_prefix,
            "document_prefix": model.document_prefix,
            "query_prefix_id": int(model.query_prefix_id),
            "document_prefix_id": int(model.document_prefix_id),
            "pad_token_id": int(model.tokenizer.pad_token_id),
            "query_length": int(model.query_length),
            "document_length": int(model.document_length),
            "do_query_expansion": bool(model.do_query_expansion),
            "attend_to_expansion_tokens": bool(model.attend_to_expansion_tokens),
            "skiplist_ids": [int(x) for x in model.skiplist],
            "embedding_dim": int(emb[0].shape[1]),
        },
        "versions": versions,
    }
    arrays = {
        "texts_json": np.array(json.dumps(texts, ensure_ascii=False)),
        "meta_json": np.array(json.dumps(meta, ensure_ascii=False, sort_keys=True)),
        "embeddings": _concat(emb, np.float32, width=emb[0].shape[1]),
        "lengths": lengths,
        "offsets": _offsets(lengths),
        "input_ids": _concat(ids, np.int64),
        "attention_mask": _concat(att, np.int64),
        "keep_mask": _concat(keep, bool),
        "id_lengths": id_lengths,
        "id_offsets": _offsets(id_lengths),
    }
    np.savez_compressed(HERE / f"{name}.npz", **arrays)
    print(f"{name}: {len(texts)} texts, rows {lengths.tolist()}, ids {id_lengths.tolist()}")
    return emb


def exact_maxsim(q, d):
    s = q.astype(np.float64) @ d.astype(np.float64).T
    return float(s.max(axis=1).sum())


def main() -> int:
    import pylate
    import scipy
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from pylate import models, rank

    versions = {
        "pylate": pylate.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": sys.version.split()[0],
    }
    print(json.dumps(versions))
    torch.manual_seed(0)

    for old in HERE.glob("*.npz"):
        old.unlink()

    with tempfile.TemporaryDirectory(prefix="colbert_goldens_") as tmp:
        tmp = pathlib.Path(tmp)
        paths, digests = {}, {}
        for cname, args in CHECKPOINTS.items():
            paths[cname] = ckpts.build_checkpoint(tmp / cname, **args)
            digests[cname] = ckpts.weights_digest(paths[cname])

        outputs = {}
        models_cache = {}
        for name, (cname, kind, texts, overrides, encode_kwargs) in CASES.items():
            key = (cname, json.dumps(overrides, sort_keys=True))
            if key not in models_cache:
                models_cache[key] = models.ColBERT(model_name_or_path=str(paths[cname]), device="cpu", **overrides)
            outputs[name] = run_case(
                name,
                models_cache[key],
                CHECKPOINTS[cname],
                digests[cname],
                kind,
                texts,
                overrides,
                encode_kwargs,
                versions,
            )

        # batch-size invariance inside PyLate itself
        def max_diff(a_case, b_case):
            pairs = zip(outputs[a_case], outputs[b_case], strict=True)
            return max(float(np.abs(a - b).max()) for a, b in pairs)

        bs3, bs32 = max_diff("documents_bs1", "documents_bs3"), max_diff("documents_bs1", "documents")
        print(f"PyLate batch-size invariance: max|bs1 - bs3| = {bs3:.3g}, max|bs1 - bs32| = {bs32:.3g}")

        # scores: queries (no expansion) x documents
        q, d = outputs["queries"], outputs["documents"]
        exact = np.array([[exact_maxsim(qi, dj) for dj in d] for qi in q], dtype=np.float64)
        rr = rank.rerank(
            documents_ids=[list(range(len(d)))] * len(q),
            queries_embeddings=[torch.from_numpy(x) for x in q],
            documents_embeddings=[[torch.from_numpy(x) for x in d]] * len(q),
            device="cpu",
        )
        rerank = np.full_like(exact, np.nan)
        for i, res in enumerate(rr):
            for r in res:
                rerank[i, int(r["id"])] = float(r["score"])
        assert not np.isnan(rerank).any()
        diff = np.abs(exact - rerank)
        print(
            f"scores: max|exact - rerank| = {diff.max():.4g}, pairs differing > 1e-4: "
            f"{int((diff > 1e-4).sum())}/{diff.size}"
        )
        smeta = {
            "format_version": FORMAT_VERSION,
            "case": "scores",
            "queries_case": "queries",
            "documents_case": "documents",
            "maxsim_exact": "sum_i max_j <q_i, d_j> over the kept rows, float64 from the float32 goldens",
            "maxsim_rerank": "pylate.rank.rerank score (docs zero-padded to the longest, no mask), float32",
            "versions": versions,
        }
        np.savez_compressed(
            HERE / "scores.npz",
            meta_json=np.array(json.dumps(smeta, sort_keys=True)),
            maxsim_exact=exact,
            maxsim_rerank=rerank.astype(np.float32),
        )

        # the pylate16 re-save layout must give the same outputs as the hub layout
        p16 = ckpts.build_checkpoint(tmp / "base_pylate16", layout="pylate16", seed=0)
        assert ckpts.weights_digest(p16) == digests["base"]
        m16 = models.ColBERT(model_name_or_path=str(p16), device="cpu")
        q16 = m16.encode(QUERIES, is_query=True, batch_size=32, show_progress_bar=False)
        d16 = m16.encode(DOCUMENTS, is_query=False, batch_size=32, show_progress_bar=False)
        pairs = zip(q16 + d16, q + d, strict=True)
        layout_diff = max(float(np.abs(np.asarray(a) - b).max()) for a, b in pairs)
        print(f"pylate16 layout vs hub layout: max|diff| = {layout_diff:.3g}")
        assert layout_diff == 0.0

    total = sum(p.stat().st_size for p in HERE.glob("*.npz"))
    print(f"wrote {len(list(HERE.glob('*.npz')))} files, {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
