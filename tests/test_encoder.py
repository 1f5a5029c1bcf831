"""ColBERTEncoder behaviour beyond the PyLate goldens: layouts, settings precedence, long documents, bad input."""

from __future__ import annotations

import json
import logging
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from colbert_adapters import CheckpointError, ColBERTEncoder, HubUnavailableError, InvalidInputError
from colbert_adapters.encoder import ModelSpec

TEXTS = [
    "Paris is the capital of France.",
    'Hello, world! This is a test (with parens) and "quotes" - dashes...',
    "",
    "naïve café — 東京 🚀",
]


def _copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------------ loading
def test_spec_reads_gte_config(tiny_encoder: ColBERTEncoder) -> None:
    spec = tiny_encoder.spec
    assert isinstance(spec, ModelSpec)
    assert (spec.dim, spec.query_length, spec.document_length) == (128, 32, 300)
    assert (spec.query_prefix, spec.document_prefix) == ("[Q] ", "[D] ")
    assert spec.do_query_expansion is False and spec.attend_to_expansion_tokens is False
    assert spec.backbone == "modernbert"
    assert tiny_encoder.dim == 128
    assert "dim=128" in tiny_encoder.model_id and spec.fingerprint in tiny_encoder.model_id
    assert "ColBERTEncoder(" in repr(tiny_encoder)


def test_both_on_disk_layouts_give_identical_vectors(make_checkpoint: Callable[..., pathlib.Path]) -> None:
    hub = ColBERTEncoder.from_pretrained(make_checkpoint(layout="hub"))
    resaved = ColBERTEncoder.from_pretrained(make_checkpoint(layout="pylate16"))
    assert resaved.spec.document_length == hub.spec.document_length == 300
    for a, b in zip(hub.encode_documents(TEXTS), resaved.encode_documents(TEXTS), strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    for a, b in zip(hub.encode_queries(TEXTS), resaved.encode_queries(TEXTS), strict=True):
        np.testing.assert_array_equal(a, b)


def test_prefix_inserted_after_cls_and_lengths(tiny_encoder: ColBERTEncoder) -> None:
    tok = tiny_encoder.tokenizer
    ids = tiny_encoder.tokenize(["hello"], is_query=True)[0].ids
    assert ids == [
        tok.cls_token_id,
        50368,
        *tok("hello", add_special_tokens=False)["input_ids"],
        tok.sep_token_id,
    ]
    doc_ids = tiny_encoder.tokenize(["hello"], is_query=False)[0].ids
    assert doc_ids[1] == 50369
    # no query expansion: one row per real token
    assert tiny_encoder.encode_queries(["hello"])[0].shape == (len(ids), 128)


def test_outputs_are_float32_unit_rows_in_input_order(tiny_encoder: ColBERTEncoder) -> None:
    docs = tiny_encoder.encode_documents(TEXTS)
    assert len(docs) == len(TEXTS)
    for text, v in zip(TEXTS, docs, strict=True):
        assert v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == 128 and v.flags.c_contiguous
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        single = tiny_encoder.encode_documents([text])[0]
        np.testing.assert_allclose(v, single, atol=1e-5)
    # the empty string keeps [CLS] [D] [SEP]
    assert docs[2].shape == (3, 128)


def test_precedence_argument_over_file_over_default(
    make_checkpoint: Callable[..., pathlib.Path], tmp_path: pathlib.Path
) -> None:
    ckpt = make_checkpoint(extra_config={"query_length": 16})
    assert ColBERTEncoder.from_pretrained(ckpt).spec.query_length == 16  # file beats default
    assert ColBERTEncoder.from_pretrained(ckpt, query_length=20).spec.query_length == 20  # argument beats file
    # a config without do_query_expansion (older Hub copies) falls back to PyLate's default: True
    old = _copy(ckpt, tmp_path / "old")
    cfg_path = old / "config_sentence_transformers.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["do_query_expansion"], cfg["query_length"]
    cfg_path.write_text(json.dumps(cfg))
    enc = ColBERTEncoder.from_pretrained(old)
    assert enc.spec.do_query_expansion is True and enc.spec.query_length == 32
    assert enc.encode_queries(["hello"])[0].shape == (32, 128)  # padded with [MASK], all rows kept
    off = ColBERTEncoder.from_pretrained(old, do_query_expansion=False, attend_to_expansion_tokens=True)
    assert off.spec.attend_to_expansion_tokens is False  # expansion off forces attend off, as PyLate


def test_unknown_config_key_warns(make_checkpoint: Callable[..., pathlib.Path]) -> None:
    ckpt = make_checkpoint(extra_config={"mystery_setting": 3})
    with pytest.warns(UserWarning, match="mystery_setting"):
        ColBERTEncoder.from_pretrained(ckpt)


def test_skiplist_drops_only_exact_punctuation_ids(tiny_encoder: ColBERTEncoder) -> None:
    text = 'a (b) "c" - d... e!'
    tokenized = tiny_encoder.tokenize([text], is_query=False)[0]
    ids, keep = tokenized.ids, tokenized.keep
    tokens = tiny_encoder.tokenizer.convert_ids_to_tokens(ids)
    dropped = {t for t, k in zip(tokens, keep, strict=True) if not k}
    kept = {t for t, k in zip(tokens, keep, strict=True) if k}
    assert dropped <= {".", ")", '"', "!", "..."} and ")" in dropped
    assert "Ġ(" in kept and 'Ġ"' in kept and "Ġ-" in kept  # BPE-prefixed punctuation stays (PyLate)
    assert tiny_encoder.encode_documents([text])[0].shape[0] == int(keep.sum())
    # queries never drop punctuation
    assert tiny_encoder.encode_queries([text])[0].shape[0] == len(tiny_encoder.tokenize([text], is_query=True)[0].ids)


def test_plain_backbone_without_dense(make_checkpoint: Callable[..., pathlib.Path]) -> None:
    enc = ColBERTEncoder.from_pretrained(make_checkpoint(layout="plain", dense=False))
    assert enc.dim == 64 and enc.spec.query_prefix == "" and enc.spec.do_query_expansion is False
    v = enc.encode_documents(["hello world"])[0]
    tok = enc.tokenizer("hello world")["input_ids"]
    assert v.shape == (len(tok), 64)


# ------------------------------------------------------------------------------------------------ long documents
def test_documents_longer_than_the_limit_are_truncated_and_logged(
    tiny_encoder: ColBERTEncoder, tiny_checkpoint: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    long_text = " ".join(["word"] * 1000)
    with caplog.at_level(logging.INFO, logger="colbert_adapters.encoder"):
        v = tiny_encoder.encode_documents([long_text, "short"])[0]
    ids = tiny_encoder.tokenize([long_text], is_query=False)[0].ids
    assert len(ids) == 300 and ids[-1] == tiny_encoder.tokenizer.sep_token_id
    assert v.shape == (300, 128)
    assert "1 of 2 documents reached document_length=300" in caplog.text
    longer = ColBERTEncoder.from_pretrained(tiny_checkpoint, document_length=1200)
    assert longer.encode_documents([long_text])[0].shape == (1003, 128)  # [CLS] [D] 1000 words [SEP]


def _packed_backbone(ckpt: pathlib.Path) -> Any:
    """The packed ModernBERT backbone the encoder loads from ``ckpt`` (private module, tested directly)."""
    from colbert_adapters._checkpoint import read_checkpoint
    from colbert_adapters._modernbert import load_packed_modernbert

    files = read_checkpoint(ckpt)
    return load_packed_modernbert(files.config, files.weight_files).eval()


def _hf_reference_hidden(ckpt: pathlib.Path, ids: list[list[int]], n_keys: list[int]) -> list[torch.Tensor]:
    from transformers import ModernBertModel

    model = ModernBertModel.from_pretrained(str(ckpt), attn_implementation="sdpa").eval()
    t = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), t), 50284)
    mask = torch.zeros((len(ids), t), dtype=torch.long)
    for i, (x, k) in enumerate(zip(ids, n_keys, strict=True)):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, :k] = 1
    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    return [out[i, : len(x)] for i, x in enumerate(ids)]


@pytest.mark.parametrize("local_attention", [16, 128])
def test_packed_long_context_matches_transformers_reference(
    make_checkpoint: Callable[..., pathlib.Path], local_attention: int
) -> None:
    """4k-token document + a short padded one: our chunked attention equals the dense-mask reference."""
    ckpt = make_checkpoint(local_attention=local_attention)
    rng = np.random.default_rng(0)
    ids = [
        [50281, 50369, *rng.integers(100, 50000, size=4093).tolist(), 50282],
        [50281, 50369, *rng.integers(100, 50000, size=37).tolist(), 50282],
    ]
    n_keys = [len(ids[0]), len(ids[1]) - 5]  # the short one also has 5 computed-but-unattended rows
    ref = _hf_reference_hidden(ckpt, ids, n_keys)
    model = _packed_backbone(ckpt)  # the encoder's ModernBERT forward pass, unit-tested on its own
    flat = torch.tensor([t for x in ids for t in x])
    with torch.inference_mode():
        ours = model(flat, [len(x) for x in ids], n_keys)
    np.testing.assert_allclose(ours[: len(ids[0])].numpy(), ref[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(ours[len(ids[0]) :].numpy(), ref[1].numpy(), atol=1e-4)


def test_32k_token_document_fits_in_memory(tiny_checkpoint: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """The reference path needs one 8.6 GB allocation at 32k tokens (tiny model); ours stays small."""
    script = tmp_path / "long.py"
    script.write_text(
        "import resource, sys\n"
        "import numpy as np\n"
        "from colbert_adapters.encoder import ColBERTEncoder\n"
        f"enc = ColBERTEncoder.from_pretrained({str(tiny_checkpoint)!r}, document_length=32768)\n"
        "text = ' '.join(np.random.default_rng(0).choice(['alpha', 'beta', 'gamma', 'delta'], 40000))\n"
        "v = enc.encode_documents([text])[0]\n"
        "assert v.shape == (32768, 128), v.shape\n"
        "assert np.isfinite(v).all()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    peak_kb = int(out.stdout.strip().splitlines()[-1])
    assert peak_kb < 3_000_000, f"peak RSS {peak_kb / 1e6:.2f} GB"


def test_bfloat16_fast_path_is_close(tiny_checkpoint: pathlib.Path, tiny_encoder: ColBERTEncoder) -> None:
    fast = ColBERTEncoder.from_pretrained(tiny_checkpoint, dtype="bf16")
    assert fast.dtype == torch.bfloat16
    for a, b in zip(tiny_encoder.encode_documents(TEXTS), fast.encode_documents(TEXTS), strict=True):
        assert a.shape == b.shape and b.dtype == np.float32
        assert float((a * b).sum(axis=1).min()) > 0.999


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx2 avx512f avx512_bf16", True), ("fpu avx2 amx_tile amx_bf16", True), ("fpu sse4_2 avx2 fma", False)],
)
def test_cpu_has_native_bf16_reads_the_cpu_flags(tmp_path: pathlib.Path, flags: str, expected: bool) -> None:
    from colbert_adapters.encoder import cpu_has_native_bf16

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    assert cpu_has_native_bf16(str(info)) is expected
    assert cpu_has_native_bf16(str(tmp_path / "missing")) is None


def test_bfloat16_on_a_cpu_without_native_bf16_warns(
    tiny_checkpoint: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import colbert_adapters.encoder as encoder_module

    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="colbert_adapters.encoder"):
        ColBERTEncoder.from_pretrained(tiny_checkpoint, device="cpu", dtype="bfloat16")
    assert any("slower than float32" in r.getMessage() for r in caplog.records)
    caplog.clear()
    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level(logging.WARNING, logger="colbert_adapters.encoder"):
        ColBERTEncoder.from_pretrained(tiny_checkpoint, device="cpu", dtype="bfloat16")
        ColBERTEncoder.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32")
    assert not any("slower than float32" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------ real weights
def test_plain_sentence_transformers_model_minilm(minilm_path: pathlib.Path) -> None:
    """all-MiniLM-L6-v2 (BERT) as a late-interaction backbone: token vectors = normalised last hidden states."""
    from transformers import AutoModel, AutoTokenizer

    enc = ColBERTEncoder.from_pretrained(minilm_path, skiplist_words=[])
    assert enc.dim == 384 and enc.spec.backbone == "bert" and enc.spec.document_length == 256
    tok = AutoTokenizer.from_pretrained(str(minilm_path))
    model = AutoModel.from_pretrained(str(minilm_path)).eval()
    ours = enc.encode_documents(TEXTS, batch_size=2)
    for text, v in zip(TEXTS, ours, strict=True):
        batch = tok([text], return_tensors="pt")
        with torch.inference_mode():
            h = model(**batch).last_hidden_state[0]
        ref = torch.nn.functional.normalize(h, dim=-1).numpy()
        assert v.shape == ref.shape
        np.testing.assert_allclose(v, ref, atol=1e-5)
    # real semantics: the matching document wins under MaxSim
    from colbert_adapters.scoring import maxsim

    q = enc.encode_queries(["What is the capital of France?"])[0]
    scores = maxsim(q, enc.encode_documents(["Paris is the capital of France.", "Bananas are yellow fruit."]))
    assert scores[0] > scores[1]


# ------------------------------------------------------------------------------------------------ hub
def _fake_hub_cache(ckpt: pathlib.Path, cache: pathlib.Path, repo: str) -> None:
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(ckpt, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)


def test_hub_id_loads_from_cache_when_offline(
    tiny_checkpoint: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_hub_cache(tiny_checkpoint, tmp_path / "hub", "lightonai/GTE-ModernColBERT-v1")
    enc = ColBERTEncoder.from_pretrained(
        "lightonai/GTE-ModernColBERT-v1", cache_dir=tmp_path / "hub", local_files_only=True
    )
    assert enc.dim == 128 and enc.spec.name == "lightonai/GTE-ModernColBERT-v1"


def test_hub_unreachable_error_says_how_to_pass_a_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="pass its path") as info:
        ColBERTEncoder.from_pretrained("lightonai/GTE-ModernColBERT-v1", cache_dir=tmp_path / "empty")
    assert "lightonai/GTE-ModernColBERT-v1" in str(info.value)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("texts", "match"),
    [
        ("a single string", "single str"),
        (["ok", None], r"documents\[1\] is NoneType"),
        (["ok", 3], r"documents\[1\] is int"),
        (None, "list of strings"),
    ],
)
def test_bad_texts(tiny_encoder: ColBERTEncoder, texts: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        tiny_encoder.encode_documents(texts)  # type: ignore[arg-type]


def test_empty_list_returns_empty(tiny_encoder: ColBERTEncoder) -> None:
    assert tiny_encoder.encode_documents([]) == []
    assert tiny_encoder.encode_queries([]) == []


def test_bad_batch_size(tiny_encoder: ColBERTEncoder) -> None:
    with pytest.raises(InvalidInputError, match="batch_size"):
        tiny_encoder.encode_queries(["x"], batch_size=0)


def test_directory_that_is_not_a_checkpoint(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="not a model checkpoint"):
        ColBERTEncoder.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="is a file"):
        ColBERTEncoder.from_pretrained(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="neither an existing directory"):
        ColBERTEncoder.from_pretrained(str(tmp_path / "missing" / "dir"))


def test_missing_dense_weights(tiny_checkpoint: pathlib.Path, tmp_path: pathlib.Path) -> None:
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    (ckpt / "1_Dense" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="Dense projection"):
        ColBERTEncoder.from_pretrained(ckpt)


def test_mismatched_dense_weights(tiny_checkpoint: pathlib.Path, tmp_path: pathlib.Path) -> None:
    from safetensors.numpy import save_file

    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    save_file({"linear.weight": np.zeros((128, 32), dtype=np.float32)}, str(ckpt / "1_Dense" / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"linear\.weight"):
        ColBERTEncoder.from_pretrained(ckpt)
    cfg = ckpt / "1_Dense" / "config.json"
    c = json.loads(cfg.read_text())
    c["in_features"] = 32
    cfg.write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match="expects 32-d inputs"):
        ColBERTEncoder.from_pretrained(ckpt)


def test_pickle_weights_are_refused(tiny_checkpoint: pathlib.Path, tmp_path: pathlib.Path) -> None:
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    (ckpt / "model.safetensors").rename(ckpt / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors only"):
        ColBERTEncoder.from_pretrained(ckpt)


def test_mismatched_backbone_weights(tiny_checkpoint: pathlib.Path, tmp_path: pathlib.Path) -> None:
    ckpt = _copy(tiny_checkpoint, tmp_path / "c")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["hidden_size"] = 32
    cfg["num_attention_heads"] = 4
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not belong together"):
        ColBERTEncoder.from_pretrained(ckpt)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device": "cuda"}, "CUDA is not available"),
        ({"device": "tpu"}, "not a torch device|not supported"),
        ({"dtype": "int4"}, "unsupported dtype"),
        ({"dtype": 3}, "dtype must be"),
        ({"query_length": 2}, "query_length must be an int >= 3"),
    ],
)
def test_unavailable_device_or_dtype(tiny_checkpoint: pathlib.Path, kwargs: dict[str, object], match: str) -> None:
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InvalidInputError, match=match):
        ColBERTEncoder.from_pretrained(tiny_checkpoint, **kwargs)  # type: ignore[arg-type]


def test_missing_prefix_token(tiny_checkpoint: pathlib.Path) -> None:
    with pytest.raises(CheckpointError, match="not a token of this tokenizer"):
        ColBERTEncoder.from_pretrained(tiny_checkpoint, query_prefix="[NOPE] ")


def test_count_tokens(tiny_encoder: ColBERTEncoder) -> None:
    assert tiny_encoder.count_tokens(["", "hello"]) == [3, 4]
    assert tiny_encoder.count_tokens([" ".join(["x"] * 500)]) == [503]  # before truncation
    assert tiny_encoder.count_tokens([" ".join(["x"] * 500)], truncate=True) == [300]


def test_pooling_survives_duplicate_tokens(tiny_encoder: ColBERTEncoder) -> None:
    """Repeated passages give cosines that round above 1; PyLate's pooling crashes there, ours must not."""
    from colbert_adapters.pooling import pool_tokens

    base = tiny_encoder.encode_documents(["alpha beta gamma delta epsilon"])[0]
    doubled = np.concatenate([base, base, base])
    pooled = pool_tokens(doubled, 2)
    # at most (n - 1) // 2 clusters plus the protected row; duplicates may merge into fewer
    assert 2 <= pooled.shape[0] <= 1 + (doubled.shape[0] - 1) // 2
    assert (np.linalg.norm(pooled, axis=1) <= 1 + 1e-5).all()
    np.testing.assert_array_equal(pooled[0], doubled[0])  # the protected [CLS] row is kept as is
    assert np.isfinite(pooled).all()
    with pytest.raises(InvalidInputError, match="pool_factor"):
        tiny_encoder.encode_documents(["x"], pool_factor=0)


@pytest.mark.parametrize("local_attention", [16, 128])
@pytest.mark.parametrize(
    ("lengths", "key_lengths"),
    [
        ([300, 17, 120, 3], [300, 12, 120, 3]),  # one sequence with computed-but-unattended rows
        ([64, 64, 64], [64, 60, 64]),  # equal lengths: no padding rows (the packed rows are the grid)
    ],
)
def test_padded_and_sequential_attention_paths_agree(
    make_checkpoint: Callable[..., pathlib.Path], local_attention: int, lengths: list[int], key_lengths: list[int]
) -> None:
    """Short batches run one padded SDPA per layer; long ones run unpadded per sequence: same numbers."""
    model = _packed_backbone(make_checkpoint(local_attention=local_attention))
    rng = np.random.default_rng(1)
    flat = torch.tensor(rng.integers(100, 50000, size=sum(lengths)))
    with torch.inference_mode():
        batched = model(flat, lengths, key_lengths)
        one_by_one = []
        start = 0
        for n, k in zip(lengths, key_lengths, strict=True):
            one_by_one.append(model(flat[start : start + n], [n], [k]))
            start += n
    np.testing.assert_allclose(batched.numpy(), torch.cat(one_by_one).numpy(), atol=1e-5)
