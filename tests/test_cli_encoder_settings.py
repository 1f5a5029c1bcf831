"""Encoder settings a user can reach: a flag per setting on every command that loads a model, recorded in the
index and reused when it is reopened; what a plain backbone is assumed to use; checkpoints we cannot run; ``-q``."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from colbert_adapters.cli import MANIFEST, main
from colbert_adapters.encoder import ColBERTEncoder
from colbert_adapters.errors import CheckpointError, CollectionConfigError
from colbert_adapters.store import MultiVectorStore

DOCS = {
    "cats.txt": "Cats are small domesticated felines that purr, and chase mice!",
    "dogs.txt": "Dogs are loyal animals that bark; they fetch sticks.",
    "rockets.txt": "Rockets burn fuel to reach orbit around the earth.",
}
#: Every encoding setting, away from the tiny checkpoint's own configuration.
SETTINGS_FLAGS = (
    "--query-prefix",
    "[unused0]",
    "--document-prefix",
    "[unused1]",
    "--query-length",
    "16",
    "--document-length",
    "64",
    "--query-expansion",
    "--attend-to-expansion-tokens",
    "--skiplist",
    "none",
)
SETTINGS = {
    "query_prefix": "[unused0]",
    "document_prefix": "[unused1]",
    "query_length": 16,
    "document_length": 64,
    "do_query_expansion": True,
    "attend_to_expansion_tokens": True,
    "skiplist_words": [],
}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "colbert_adapters.cli", *argv], capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def indexed(capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path) -> Path:
    """An index made with every setting given on the command line."""
    idx = tmp_path / "idx"
    code, _, err = _run(
        capsys, "index", str(folder), str(idx), "--model", str(tiny_checkpoint), "--backend", "memory", "-q",
        *SETTINGS_FLAGS,
    )  # fmt: skip
    assert code == 0, err
    return idx


def _search_json(capsys: Any, idx: Path, query: str, *extra: str) -> list[dict[str, Any]]:
    code, out, err = _run(capsys, "search", str(idx), query, "--json", *extra)
    assert code == 0, err
    return list(json.loads(out))


# ------------------------------------------------------------------------------------------------ recorded settings
def test_index_records_every_setting(indexed: Path) -> None:
    settings = json.loads((indexed / MANIFEST).read_text())["settings"]
    assert settings == SETTINGS


def test_search_reopens_with_the_recorded_settings(capsys: Any, indexed: Path, tiny_checkpoint: Path) -> None:
    hits = _search_json(capsys, indexed, "felines that purr", "-k", "3")
    with_settings = ColBERTEncoder.from_pretrained(tiny_checkpoint, device="cpu", **SETTINGS)  # type: ignore[arg-type]
    with MultiVectorStore.open(indexed, with_settings) as store:
        expected = store.search("felines that purr", k=3)
    assert [h["id"] for h in hits] == [h.id for h in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in expected], rtol=1e-5)
    # the checkpoint's own settings would score differently: the recorded ones are what search used
    own = ColBERTEncoder.from_pretrained(tiny_checkpoint, device="cpu")
    q_own = own.encode_queries(["felines that purr"])[0]
    q_rec = with_settings.encode_queries(["felines that purr"])[0]
    assert q_own.shape != q_rec.shape  # query expansion pads to 16 rows


def test_store_open_uses_the_recorded_settings(indexed: Path) -> None:
    with MultiVectorStore.open(indexed, device="cpu") as store:
        spec = store.encoder.spec  # type: ignore[attr-defined]
        assert {k: getattr(spec, k) for k in SETTINGS} == {**SETTINGS, "skiplist_words": ()}


def test_store_open_refuses_an_encoder_with_other_settings(indexed: Path, tiny_checkpoint: Path) -> None:
    other = ColBERTEncoder.from_pretrained(
        tiny_checkpoint,
        device="cpu",
        **{**SETTINGS, "query_prefix": "[unused2]"},  # type: ignore[arg-type]
    )
    with pytest.raises(CollectionConfigError, match=r"query_prefix '\[unused0\]' recorded, '\[unused2\]' given"):
        MultiVectorStore.open(indexed, other)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--query-prefix", "[Q] "), "--query-prefix"),
        (("--document-prefix", ""), "--document-prefix"),
        (("--query-length", "32"), "--query-length"),
        (("--document-length", "300"), "--document-length"),
        (("--no-query-expansion",), "--query-expansion"),
        (("--no-attend-to-expansion-tokens",), "--attend-to-expansion-tokens"),
        (("--skiplist", "punctuation"), "--skiplist"),
    ],
)
def test_search_flag_contradicting_the_index_is_refused(
    capsys: Any, indexed: Path, flags: tuple[str, ...], named: str
) -> None:
    code, _, err = _run(capsys, "search", str(indexed), "cats", *flags)
    assert code == 2 and "was indexed with" in err and f"omit {named}" in err


def test_index_flag_contradicting_the_index_is_refused(capsys: Any, indexed: Path, folder: Path) -> None:
    code, _, err = _run(capsys, "index", str(folder), str(indexed), "-q", "--query-prefix", "[Q] ")
    assert code == 2 and "query_prefix='[unused0]'" in err


def test_search_flag_repeating_the_recorded_setting_is_accepted(capsys: Any, indexed: Path) -> None:
    plain = _search_json(capsys, indexed, "rockets", "-k", "2")
    repeated = _search_json(capsys, indexed, "rockets", "-k", "2", *SETTINGS_FLAGS)
    assert plain == repeated


def test_index_made_before_settings_were_recorded_still_opens(
    capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path
) -> None:
    idx = tmp_path / "old"
    code, _, err = _run(
        capsys, "index", str(folder), str(idx), "--model", str(tiny_checkpoint), "--backend", "memory", "-q"
    )
    assert code == 0, err
    before = _search_json(capsys, idx, "dogs bark", "-k", "3")
    manifest = json.loads((idx / MANIFEST).read_text())
    # what earlier versions wrote: the lengths only (null unless given), and no checksum
    old = {k: v for k, v in manifest.items() if k != "manifest_crc32"}
    old["settings"] = {"document_length": None, "query_length": None}
    (idx / MANIFEST).write_text(json.dumps(old))
    assert _search_json(capsys, idx, "dogs bark", "-k", "3") == before
    # unrecorded settings are the checkpoint's own: a flag that contradicts them is refused too
    code, _, err = _run(capsys, "search", str(idx), "dogs", "--query-prefix", "[unused0]")
    assert code == 2 and "query_prefix='[Q] '" in err
    # indexing into it again records every setting in force
    assert _run(capsys, "index", str(folder), str(idx), "-q")[0] == 0
    settings = json.loads((idx / MANIFEST).read_text())["settings"]
    assert settings["query_prefix"] == "[Q] " and settings["document_length"] == 300
    assert _search_json(capsys, idx, "dogs bark", "-k", "3") == before


def test_eval_takes_the_settings_flags(capsys: Any, tmp_path: Path, tiny_checkpoint: Path) -> None:
    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in DOCS.items()), encoding="utf-8"
    )
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "purring cats"}) + "\n")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tcats.txt\t1\n")
    code, out, err = _run(capsys, "eval", str(data), "--model", str(tiny_checkpoint), "-q", "--json", *SETTINGS_FLAGS)
    assert code == 0, err
    assert json.loads(out)["settings"] == SETTINGS


@pytest.mark.parametrize("value", ["punct", '["a", 1]', "{}"])
def test_bad_skiplist_is_a_usage_error(capsys: Any, indexed: Path, value: str) -> None:
    code, _, err = _run(capsys, "search", str(indexed), "cats", "--skiplist", value)
    assert code == 2 and "'punctuation', 'none' or a JSON list" in err


def test_skiplist_json_list_is_used(capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path) -> None:
    idx = tmp_path / "idx"
    code, _, err = _run(
        capsys, "index", str(folder), str(idx), "--model", str(tiny_checkpoint), "--backend", "memory", "-q",
        "--skiplist", '["!", ";"]',
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((idx / MANIFEST).read_text())["settings"]["skiplist_words"] == ["!", ";"]


# ------------------------------------------------------------------------------------------------ plain backbones
def test_plain_backbone_says_once_what_it_assumes(
    make_checkpoint: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = shutil.copytree(make_checkpoint(layout="plain", dense=False), tmp_path / "plain")
    with caplog.at_level(logging.INFO, logger="colbert_adapters.encoder"):
        ColBERTEncoder.from_pretrained(ckpt, device="cpu")
        ColBERTEncoder.from_pretrained(ckpt, device="cpu")
    told = [r for r in caplog.records if "backbone (no PyLate configuration" in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.WARNING
    message = told[0].getMessage()
    for part in ("no projection (dim 64)", "query_prefix=''", "document_length=", "string.punctuation"):
        assert part in message
    # this tokenizer has PyLate's marker tokens: they are what it suggests
    assert "--query-prefix '[Q] ' --document-prefix '[D] '" in message


def test_plain_backbone_with_chosen_prefixes_is_told_at_info(
    make_checkpoint: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = shutil.copytree(make_checkpoint(layout="plain", dense=False), tmp_path / "plain")
    with caplog.at_level(logging.INFO, logger="colbert_adapters.encoder"):
        ColBERTEncoder.from_pretrained(ckpt, device="cpu", query_prefix="[unused0]", document_prefix="[unused1]")
    told = [r for r in caplog.records if "backbone (no PyLate configuration" in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.INFO and "query_prefix='[unused0]'" in told[0].getMessage()


def test_plain_bert_backbone_suggests_its_unused_tokens_on_the_command_line(
    tmp_path: Path, folder: Path, minilm_path: Path
) -> None:
    out = _cli("index", str(folder), str(tmp_path / "idx"), "--model", str(minilm_path), "--backend", "memory", "-q")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("plain bert backbone") == 1
    assert "--query-prefix '[unused0]' --document-prefix '[unused1]'" in out.stderr


def test_missing_prefix_token_suggests_the_unused_tokens(minilm_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not a token of this tokenizer") as info:
        ColBERTEncoder.from_pretrained(minilm_path, query_prefix="[Q] ", document_prefix="[D] ")
    assert "query_prefix='[unused0]', document_prefix='[unused1]'" in str(info.value)
    assert "--query-prefix '[unused0]' --document-prefix '[unused1]'" in str(info.value)


def test_unused_tokens_as_prefixes_are_the_vocabulary_ids(minilm_path: Path) -> None:
    enc = ColBERTEncoder.from_pretrained(minilm_path, query_prefix="[unused0]", document_prefix="[unused1]")
    unused0, unused1 = enc.tokenizer.convert_tokens_to_ids(["[unused0]", "[unused1]"])
    assert enc.tokenize(["a query"], is_query=True)[0].ids[1] == unused0
    assert enc.tokenize(["a document"])[0].ids[1] == unused1


# ------------------------------------------------------------------------------------------------ not checkpoints
def _onnx_export(root: Path, tiny_checkpoint: Path) -> Path:
    """What optimum / sentence-transformers write for ONNX: configs and tokenizer, model.onnx, no safetensors."""
    root.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_checkpoint / name, root / name)
    (root / "model.onnx").write_bytes(b"\x08\x07onnx-protobuf")
    return root


def test_onnx_folder_is_refused_naming_the_file(tmp_path: Path, tiny_checkpoint: Path) -> None:
    onnx = _onnx_export(tmp_path / "onnx", tiny_checkpoint)
    with pytest.raises(CheckpointError, match=r"holds a ONNX model \(model\.onnx\).*does not support ONNX") as info:
        ColBERTEncoder.from_pretrained(onnx)
    assert "model.safetensors" in str(info.value) and "Hub id" in str(info.value)


def test_onnx_subfolder_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m" / "onnx").mkdir(parents=True)
    (tmp_path / "m" / "onnx" / "model_quantized.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(CheckpointError, match=r"ONNX model \(onnx/model_quantized\.onnx\)"):
        ColBERTEncoder.from_pretrained(tmp_path / "m")


def test_onnx_folder_on_the_command_line(capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path) -> None:
    onnx = _onnx_export(tmp_path / "onnx", tiny_checkpoint)
    code, _, err = _run(capsys, "index", str(folder), str(tmp_path / "i"), "--model", str(onnx), "--backend", "memory")
    assert code == 1 and "does not support ONNX" in err and "Traceback" not in err


@pytest.mark.parametrize(("name", "fmt"), [("tf_model.h5", "TensorFlow"), ("model.gguf", "GGUF")])
def test_other_runtimes_models_are_named(tmp_path: Path, tiny_checkpoint: Path, name: str, fmt: str) -> None:
    root = tmp_path / "m"
    root.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", root / "config.json")
    (root / name).write_bytes(b"\0")
    with pytest.raises(CheckpointError, match=f"holds a {fmt} model"):
        ColBERTEncoder.from_pretrained(root)


def test_an_index_passed_as_the_model_is_refused(capsys: Any, indexed: Path) -> None:
    with pytest.raises(CheckpointError, match="is a colbert-adapters index"):
        ColBERTEncoder.from_pretrained(indexed)


# ------------------------------------------------------------------------------------------------ -q
@pytest.fixture
def minilm_index(tmp_path: Path, folder: Path, minilm_path: Path) -> Path:
    idx = tmp_path / "minilm"
    out = _cli(
        "index", str(folder), str(idx), "--model", str(minilm_path), "--backend", "memory", "-q",
        "--query-prefix", "[unused0]", "--document-prefix", "[unused1]",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return idx


def test_quiet_silences_transformers_loading_bars(minilm_index: Path) -> None:
    loud = _cli("search", str(minilm_index), "cats")
    assert loud.returncode == 0 and "Loading weights" in loud.stderr  # what -q has to silence
    quiet = _cli("search", str(minilm_index), "cats", "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and "cats.txt" in quiet.stdout


def test_quiet_restores_the_libraries_state(capsys: Any, indexed: Path) -> None:
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    bars, hub_off, level = (
        hf_logging.is_progress_bar_enabled(),
        hub_utils.are_progress_bars_disabled(),  # type: ignore[attr-defined]
        hf_logging.get_verbosity(),
    )
    assert _run(capsys, "search", str(indexed), "cats", "-q")[0] == 0
    assert hf_logging.is_progress_bar_enabled() == bars
    assert hub_utils.are_progress_bars_disabled() == hub_off  # type: ignore[attr-defined]
    assert hf_logging.get_verbosity() == level


# ------------------------------------------------------------------------------------------------ eval streams
def test_eval_streams_many_chunks_with_every_document_in_place(
    capsys: Any, tmp_path: Path, tiny_checkpoint: Path, tiny_encoder: ColBERTEncoder
) -> None:
    """More documents than one encode chunk and one upsert chunk: each backend receives every document's own
    vectors under its id (the same run as indexing them directly)."""
    from colbert_adapters import evaluation as ev
    from colbert_adapters.backends import MemoryBackend

    words = ["cat", "dog", "rocket", "river", "piano", "cloud", "apple", "stone", "train", "lamp", "moon"]
    rng = np.random.default_rng(0)
    docs = {f"d{i}": " ".join(rng.choice(words, size=4 + i % 9)) + f" number {i}" for i in range(1100)}
    qrels = {"q1": {"d5": 1}, "q2": {"d700": 1}, "q3": {"d1099": 1}, "q4": {"d3": 1}}
    queries = {q: docs[next(iter(r))] for q, r in qrels.items()}  # each query is its document's text
    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items()), encoding="utf-8"
    )
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (data / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, r in qrels.items() for d in r)
    )
    code, out, err = _run(capsys, "eval", str(data), "--model", str(tiny_checkpoint), "-q", "--json")
    assert code == 0, err
    result = json.loads(out)

    backend = MemoryBackend(dim=tiny_encoder.dim)
    vectors = tiny_encoder.encode_documents(list(docs.values()), show_progress=False)
    backend.upsert(list(docs), vectors)
    run = {
        q: {h.id: h.score for h in backend.search(tiny_encoder.encode_queries([t])[0], k=100)}
        for q, t in queries.items()
    }
    expected = ev.evaluate(run, qrels, ks=(10, 100))
    assert result["tokens"] == sum(v.shape[0] for v in vectors)
    assert expected["MRR@10"] > 0.5
    for key in ("nDCG@10", "Recall@100", "MRR@10"):
        assert result["backends"]["memory"][key] == round(expected[key], 4)
