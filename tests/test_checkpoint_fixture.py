"""Tests of the tiny-checkpoint builder (tests/fixtures/checkpoints.py) and of the committed
PyLate goldens' provenance (tests/golden/*.npz were made from checkpoints this builder
rebuilds bit for bit)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import string
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

TESTS = pathlib.Path(__file__).resolve().parent
GOLDEN = TESTS / "golden"


def _load_builder():
    name = "colbert_adapters_test_checkpoints"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / "fixtures" / "checkpoints.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ck = _load_builder()

HUB_FILES = {
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "1_Dense/config.json",
    "1_Dense/model.safetensors",
}
PYLATE16_FILES = (HUB_FILES - {"special_tokens_map.json"}) | {"README.md"}
PLAIN_FILES = {
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
}
ST_CONFIG_KEYS = [
    "__version__",
    "prompts",
    "default_prompt_name",
    "similarity_fn_name",
    "query_prefix",
    "document_prefix",
    "query_length",
    "document_length",
    "attend_to_expansion_tokens",
    "skiplist_words",
    "do_query_expansion",
]


def _files(d: pathlib.Path) -> set[str]:
    return {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}


def _json(path: pathlib.Path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> pathlib.Path:
    return ck.build_checkpoint(tmp_path_factory.mktemp("hub") / "ckpt")


@pytest.fixture(scope="module")
def pylate16(tmp_path_factory) -> pathlib.Path:
    return ck.build_checkpoint(tmp_path_factory.mktemp("p16") / "ckpt", layout="pylate16")


def test_hub_layout_files_and_json(hub: pathlib.Path) -> None:
    assert _files(hub) == HUB_FILES
    assert _json(hub / "modules.json") == [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]
    assert _json(hub / "sentence_bert_config.json") == {"max_seq_length": 299, "do_lower_case": False}
    st = _json(hub / "config_sentence_transformers.json")
    assert list(st) == ST_CONFIG_KEYS
    assert st["prompts"] == {} and st["default_prompt_name"] is None
    assert (st["query_prefix"], st["document_prefix"]) == ("[Q] ", "[D] ")
    assert (st["query_length"], st["document_length"]) == (32, 300)
    assert st["similarity_fn_name"] == "MaxSim"
    assert st["skiplist_words"] == list(string.punctuation)
    assert st["do_query_expansion"] is False and st["attend_to_expansion_tokens"] is False

    cfg = _json(hub / "config.json")
    assert cfg["architectures"] == ["ModernBertModel"] and cfg["model_type"] == "modernbert"
    assert cfg["vocab_size"] == 50370 and cfg["max_position_embeddings"] == 8192
    assert (cfg["hidden_size"], cfg["intermediate_size"]) == (64, 96)
    assert (cfg["num_hidden_layers"], cfg["num_attention_heads"]) == (4, 4)
    assert cfg["global_rope_theta"] == 160000.0 and cfg["local_rope_theta"] == 10000.0
    assert cfg["global_attn_every_n_layers"] == 3 and cfg["local_attention"] == 128
    assert not cfg["attention_bias"] and not cfg["mlp_bias"] and not cfg["norm_bias"]
    assert "layer_types" not in cfg and "rope_parameters" not in cfg

    dense_text = (hub / "1_Dense" / "config.json").read_text()
    assert "\n" not in dense_text  # compact JSON, as on the Hub
    assert json.loads(dense_text) == {
        "in_features": 64,
        "out_features": 128,
        "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    # the tokenizer files are the committed ModernBERT ones, unchanged
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (hub / name).read_bytes() == (ck.TOKENIZER_DIR / name).read_bytes()
    assert _json(hub / "tokenizer_config.json")["pad_token"] == "[MASK]"


def test_hub_weights_keys_shapes(hub: pathlib.Path) -> None:
    sd = load_file(str(hub / "model.safetensors"))
    expected = dict(ck.backbone_tensor_shapes(64, 96, 4))
    assert {k: v.shape for k, v in sd.items()} == expected
    assert "layers.0.attn_norm.weight" not in sd and "layers.1.attn_norm.weight" in sd
    assert sd["layers.2.attn.Wqkv.weight"].shape == (192, 64)
    assert sd["layers.2.mlp.Wi.weight"].shape == (192, 64)
    assert sd["layers.2.mlp.Wo.weight"].shape == (64, 96)
    assert not any("bias" in k for k in sd)
    assert all(v.dtype == np.float32 for v in sd.values())
    norm = sd["final_norm.weight"]
    assert 0.5 < norm.mean() < 1.5 and norm.std() > 0.01  # non-trivial LayerNorm weights
    dense = load_file(str(hub / "1_Dense" / "model.safetensors"))
    assert list(dense) == ["linear.weight"]
    assert dense["linear.weight"].shape == (128, 64) and dense["linear.weight"].dtype == np.float32


def test_pylate16_layout(pylate16: pathlib.Path, hub: pathlib.Path) -> None:
    assert _files(pylate16) == PYLATE16_FILES
    tok_cfg = _json(pylate16 / "tokenizer_config.json")
    assert tok_cfg["tokenizer_class"] == "TokenizersBackend"
    assert tok_cfg["model_max_length"] == 299 and tok_cfg["pad_token"] == "[MASK]"
    assert "added_tokens_decoder" not in tok_cfg
    cfg = _json(pylate16 / "config.json")
    assert cfg["layer_types"] == [
        "full_attention",
        "sliding_attention",
        "sliding_attention",
        "full_attention",
    ]
    assert cfg["rope_parameters"]["full_attention"]["rope_theta"] == 160000.0
    assert cfg["rope_parameters"]["sliding_attention"]["rope_theta"] == 10000.0
    assert "global_rope_theta" not in cfg and "local_rope_theta" not in cfg
    assert _json(pylate16 / "1_Dense" / "config.json")["use_residual"] is False
    st = _json(pylate16 / "config_sentence_transformers.json")
    assert st["prompts"] == {"query": "", "document": ""}
    assert list(st) == ST_CONFIG_KEYS
    assert _json(pylate16 / "sentence_bert_config.json") == _json(hub / "sentence_bert_config.json")
    assert (pylate16 / "tokenizer.json").read_bytes() == (hub / "tokenizer.json").read_bytes()
    # same weights as the hub layout
    assert ck.weights_digest(pylate16) == ck.weights_digest(hub)


def test_plain_and_no_dense(tmp_path: pathlib.Path) -> None:
    plain = ck.build_checkpoint(tmp_path / "plain", layout="plain")
    assert _files(plain) == PLAIN_FILES
    no_dense = ck.build_checkpoint(tmp_path / "nodense", dense=False)
    assert _files(no_dense) == HUB_FILES - {"1_Dense/config.json", "1_Dense/model.safetensors"}
    assert _json(no_dense / "modules.json") == [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
    ]
    # the backbone weights do not depend on the layout nor on the Dense
    assert (
        load_file(str(plain / "model.safetensors"))["final_norm.weight"]
        == load_file(str(no_dense / "model.safetensors"))["final_norm.weight"]
    ).all()


def test_options_written_to_configs(tmp_path: pathlib.Path) -> None:
    d = ck.build_checkpoint(
        tmp_path / "c",
        query_expansion=True,
        attend_to_expansion_tokens=True,
        query_length=16,
        document_length=64,
        embedding_size=32,
        local_attention=16,
        num_hidden_layers=5,
        extra_config={"unknown_key": [1, 2], "document_prefix": "[Doc] "},
    )
    st = _json(d / "config_sentence_transformers.json")
    assert st["do_query_expansion"] is True and st["attend_to_expansion_tokens"] is True
    assert (st["query_length"], st["document_length"]) == (16, 64)
    assert st["unknown_key"] == [1, 2] and st["document_prefix"] == "[Doc] "
    assert _json(d / "sentence_bert_config.json")["max_seq_length"] == 63
    assert _json(d / "config.json")["local_attention"] == 16
    assert _json(d / "1_Dense" / "config.json")["out_features"] == 32
    assert load_file(str(d / "1_Dense" / "model.safetensors"))["linear.weight"].shape == (32, 64)
    sd = load_file(str(d / "model.safetensors"))
    assert "layers.4.mlp.Wo.weight" in sd
    p16 = ck.build_checkpoint(tmp_path / "p16", layout="pylate16", num_hidden_layers=5, document_length=64)
    assert _json(p16 / "config.json")["layer_types"][3:] == ["full_attention", "sliding_attention"]
    assert _json(p16 / "tokenizer_config.json")["model_max_length"] == 63


def test_bad_arguments(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError):
        ck.build_checkpoint(tmp_path / "a", layout="nope")
    with pytest.raises(ValueError):
        ck.build_checkpoint(tmp_path / "b", num_attention_heads=5)
    d = ck.build_checkpoint(tmp_path / "c")
    with pytest.raises(FileExistsError):
        ck.build_checkpoint(d)


def test_digest_reproducible_and_seed_dependent(tmp_path: pathlib.Path, hub: pathlib.Path) -> None:
    again = ck.build_checkpoint(tmp_path / "again")
    assert ck.weights_digest(again) == ck.weights_digest(hub)
    assert (again / "model.safetensors").read_bytes() == (hub / "model.safetensors").read_bytes()
    other = ck.build_checkpoint(tmp_path / "seed1", seed=1)
    assert ck.weights_digest(other) != ck.weights_digest(hub)
    # the digest covers the Dense weights too
    no_dense = ck.build_checkpoint(tmp_path / "nodense", dense=False)
    assert ck.weights_digest(no_dense) != ck.weights_digest(hub)


def test_tokenizer_reference_ids(hub: pathlib.Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(hub / "tokenizer.json"))
    assert tok.encode("Hello world! This is a test.").ids == [
        50281,
        12092,
        1533,
        2,
        831,
        310,
        247,
        1071,
        15,
        50282,
    ]
    assert tok.encode("The capital of France is [MASK].").ids == [
        50281,
        510,
        5347,
        273,
        6181,
        310,
        50284,
        15,
        50282,
    ]
    assert tok.token_to_id("[Q] ") == ck.QUERY_PREFIX_ID == 50368
    assert tok.token_to_id("[D] ") == ck.DOCUMENT_PREFIX_ID == 50369
    assert tok.get_vocab_size(with_added_tokens=True) == ck.VOCAB_SIZE


@pytest.mark.parametrize("layout", ["hub", "pylate16"])
def test_transformers_loads_both_layouts(tmp_path: pathlib.Path, layout: str) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    d = ck.build_checkpoint(tmp_path / layout, layout=layout)
    model, info = transformers.ModernBertModel.from_pretrained(str(d), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert list(model.config.layer_types) == [
        "full_attention",
        "sliding_attention",
        "sliding_attention",
        "full_attention",
    ]
    assert model.config.local_attention == 128
    tok = transformers.AutoTokenizer.from_pretrained(str(d))
    assert tok.pad_token == "[MASK]" and tok.mask_token_id == 50284
    assert tok.convert_tokens_to_ids("[Q] ") == 50368


# ------------------------------------------------------------------------------------------
# goldens
# ------------------------------------------------------------------------------------------
GOLDEN_FILES = sorted(p for p in GOLDEN.glob("*.npz") if p.name != "scores.npz")


def test_goldens_present() -> None:
    names = {p.stem for p in GOLDEN_FILES}
    assert {
        "queries",
        "queries_expansion",
        "queries_expansion_attend",
        "documents",
        "documents_bs1",
        "documents_bs3",
        "documents_len64",
        "documents_pool2",
        "documents_window16_len1024",
    } <= names
    assert (GOLDEN / "scores.npz").is_file()
    assert sum(p.stat().st_size for p in GOLDEN.glob("*.npz")) < 2_500_000


def test_golden_checkpoints_rebuild_bit_for_bit(tmp_path: pathlib.Path) -> None:
    """The reproducibility guarantee: every golden's checkpoint, rebuilt now from its recorded
    build arguments, has exactly the weights the golden was computed from."""
    digests: dict[str, str] = {}
    for path in GOLDEN_FILES:
        with np.load(path) as z:
            meta = json.loads(str(z["meta_json"]))
        args = meta["checkpoint"]["build_args"]
        key = json.dumps(args, sort_keys=True)
        if key not in digests:
            d = ck.build_checkpoint(tmp_path / f"c{len(digests)}", **args)
            digests[key] = ck.weights_digest(d)
        assert digests[key] == meta["checkpoint"]["weights_digest"], path.name


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden_file_format(path: pathlib.Path) -> None:
    with np.load(path) as z:  # allow_pickle=False by default
        texts = json.loads(str(z["texts_json"]))
        meta = json.loads(str(z["meta_json"]))
        emb, lengths, offsets = z["embeddings"], z["lengths"], z["offsets"]
        ids, id_lengths, id_offsets = z["input_ids"], z["id_lengths"], z["id_offsets"]
        keep, att = z["keep_mask"], z["attention_mask"]
    n = len(texts)
    assert meta["n_texts"] == n == len(lengths) == len(id_lengths)
    assert emb.dtype == np.float32 and emb.shape == (int(lengths.sum()), 128)
    assert (offsets == np.concatenate([[0], np.cumsum(lengths)])).all()
    assert (id_offsets == np.concatenate([[0], np.cumsum(id_lengths)])).all()
    assert ids.shape == keep.shape == att.shape == (int(id_lengths.sum()),)
    assert keep.dtype == np.bool_ and ids.dtype == np.int64
    prefix = 50368 if meta["kind"] == "query" else 50369
    for i in range(n):
        tok = ids[id_offsets[i] : id_offsets[i + 1]]
        assert tok[0] == 50281 and tok[1] == prefix
        if meta["encoder_call"]["kwargs"].get("pool_factor", 1) == 1:
            assert keep[id_offsets[i] : id_offsets[i + 1]].sum() == lengths[i]
            rows = emb[offsets[i] : offsets[i + 1]]
            np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_golden_scores_format() -> None:
    with np.load(GOLDEN / "scores.npz") as z:
        exact, rerank = z["maxsim_exact"], z["maxsim_rerank"]
        meta = json.loads(str(z["meta_json"]))
    with (
        np.load(GOLDEN / f"{meta['queries_case']}.npz") as q,
        np.load(GOLDEN / f"{meta['documents_case']}.npz") as d,
    ):
        shape = (len(q["lengths"]), len(d["lengths"]))
    assert exact.shape == rerank.shape == shape
    # zero padding in rank.rerank can only raise a score
    assert (rerank >= exact - 1e-4).all()
