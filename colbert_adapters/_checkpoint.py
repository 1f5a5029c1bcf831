"""Locating and reading PyLate / sentence-transformers / transformers checkpoints.

Only safetensors weights are ever loaded (loading pickle can execute code); ``trust_remote_code`` is off
unless the caller turns it on. Hub ids resolve through huggingface_hub's cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import string
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError, HubUnavailableError

logger = logging.getLogger(__name__)

__all__ = [
    "SETTING_KEYS",
    "CheckpointFiles",
    "DenseSpec",
    "describe_plain_backbone",
    "load_hf_model",
    "load_tokenizer",
    "prefix_advice",
    "read_checkpoint",
    "resolve_model_dir",
    "spare_tokens",
]

# What we download from the Hub: configs, tokenizer files and safetensors weights; never pickles.
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.md"]

PYLATE_DEFAULTS: dict[str, Any] = {
    "query_prefix": "[Q] ",
    "document_prefix": "[D] ",
    "query_length": 32,
    "document_length": 180,
    "do_query_expansion": True,
    "attend_to_expansion_tokens": False,
    "skiplist_words": list(string.punctuation),
}

#: The encoding settings a checkpoint configures and a caller may override (``from_pretrained`` keyword arguments,
#: ``ModelSpec`` fields, the ``settings`` an index directory records).
SETTING_KEYS: tuple[str, ...] = tuple(PYLATE_DEFAULTS)

# Weight formats other libraries run, recognised so the error names them: (format, glob patterns).
_FOREIGN_FORMATS = (
    ("ONNX", ("*.onnx", "onnx/*.onnx")),
    ("OpenVINO", ("openvino_model.xml", "openvino/*.xml")),
    ("TensorFlow", ("tf_model.h5", "saved_model.pb")),
    ("Flax", ("flax_model.msgpack",)),
    ("GGUF", ("*.gguf",)),
    ("Core ML", ("*.mlpackage", "*.mlmodel")),
)

# Spare vocabulary entries that ColBERT models use as query/document markers (BERT's "[unused0]", Gemma's
# "<unused0>"): Stanford ColBERT trains with "[unused0]" / "[unused1]".
_SPARE_TOKEN = re.compile(r"^(?:\[unused(\d+)\]|<unused(\d+)>)$")

# Keys of config_sentence_transformers.json that we read or that carry no meaning for encoding.
_KNOWN_ST_KEYS = set(PYLATE_DEFAULTS) | {
    "__version__",
    "prompts",
    "default_prompt_name",
    "similarity_fn_name",
    "model_type",
    "model_card_data",
    "modules",
}

_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.Tanh": "tanh",
    "torch.nn.modules.activation.ReLU": "relu",
    "torch.nn.modules.activation.GELU": "gelu",
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.modules.activation.SiLU": "silu",
}


@dataclass(frozen=True)
class DenseSpec:
    """One projection layer (PyLate ``Dense`` / sentence-transformers ``Dense``)."""

    path: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str
    use_residual: bool


@dataclass
class CheckpointFiles:
    """Everything read from a checkpoint directory, before any weights are loaded."""

    root: Path
    transformer_dir: Path
    config: dict[str, Any]
    st_config: dict[str, Any]
    dense: list[DenseSpec]
    is_colbert: bool
    max_seq_length: int | None
    do_lower_case: bool
    weight_files: list[Path] = field(default_factory=list)

    def fingerprint(self) -> str:
        """A short hash identifying the model: configs, the projection weights, the backbone weights' headers."""
        h = hashlib.sha256()
        for p in [self.transformer_dir / "config.json", self.root / "config_sentence_transformers.json"]:
            if p.is_file():
                h.update(p.read_bytes())
        for f in self.weight_files:
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                h.update(fh.read(min(n, 1 << 20)))
            h.update(str(f.stat().st_size).encode())
        for d in self.dense:
            h.update((d.path / "model.safetensors").read_bytes())
        return h.hexdigest()[:16]


def _looks_like_path(s: str) -> bool:
    # Hub ids are "org/name" (or a bare legacy "name"); anything else is meant as a local path.
    return s.startswith((".", "/", "~", "\\")) or s.count("/") > 1 or (os.sep != "/" and os.sep in s) or not s


def resolve_model_dir(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """Return a local directory holding the checkpoint: the path itself, or the Hub snapshot in the cache.

    Raises:
        CheckpointError: a local path that does not exist or is a file; a Hub repo that does not exist.
        HubUnavailableError: the Hub cannot be reached and the model is not cached.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise CheckpointError(f"model must be a Hub id or a directory path, got {type(name_or_path).__name__}")
    s = os.fspath(name_or_path)
    p = Path(s).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(f"{s!r} is a file; pass the checkpoint directory that contains it")
    if _looks_like_path(s):
        raise CheckpointError(
            f"{s!r} is neither an existing directory nor a Hub id of the form 'org/name'; check the path"
        )
    import huggingface_hub as hub
    from huggingface_hub import errors as hub_errors

    kwargs: dict[str, Any] = dict(
        repo_id=s, revision=revision, cache_dir=cache_dir, token=token, allow_patterns=HUB_ALLOW_PATTERNS
    )
    try:
        return Path(hub.snapshot_download(local_files_only=local_files_only, **kwargs))
    except (
        hub_errors.RepositoryNotFoundError,
        hub_errors.RevisionNotFoundError,
        hub_errors.GatedRepoError,
    ) as err:
        raise CheckpointError(f"Hub model {s!r} (revision {revision or 'main'}) cannot be used: {err}") from err
    except Exception as err:  # connection errors, offline mode, missing cache entries
        if not local_files_only:
            try:
                return Path(hub.snapshot_download(local_files_only=True, **kwargs))
            except Exception:
                pass
        cache = cache_dir or hub.constants.HF_HUB_CACHE
        raise HubUnavailableError(
            f"{s!r} is not a local directory, and could not download {s!r} from the Hugging Face Hub and it "
            f"is not in the local cache ({cache}): "
            f"{type(err).__name__}: {err}. If this machine is offline, download the model elsewhere "
            f"(e.g. `hf download {s} --local-dir ./model`), copy the directory here and pass its path: "
            "ColBERTEncoder.from_pretrained('./model') or `--model ./model`."
        ) from err


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{what} ({path}) is not valid JSON: {err}") from err


def _weight_files(d: Path, what: str) -> list[Path]:
    single = d / "model.safetensors"
    if single.is_file():
        return [single]
    index = d / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(_read_json(index, "safetensors index")["weight_map"].values()))
        missing = [f for f in files if not (d / f).is_file()]
        if missing:
            raise CheckpointError(f"{what}: shards {missing} listed in {index} are missing")
        return [d / f for f in files]
    pickles = [p.name for p in d.glob("*.bin")] + [p.name for p in d.glob("*.pt")] + [p.name for p in d.glob("*.pth")]
    if pickles:
        raise CheckpointError(
            f"{what} in {d} has only pickle weights ({', '.join(sorted(pickles))}); colbert-adapters loads "
            "safetensors only, because unpickling can execute code. Convert them once in a trusted environment, "
            "e.g. `model.save_pretrained(dir, safe_serialization=True)`."
        )
    foreign = _foreign_format_error(d)
    if foreign is not None:
        raise CheckpointError(foreign)
    raise CheckpointError(f"{what}: no model.safetensors in {d}; is this a model checkpoint directory?")


def _foreign_format_error(d: Path) -> str | None:
    """The error for a directory holding another runtime's model (ONNX, OpenVINO, ...) or an index, else ``None``."""
    for fmt, patterns in _FOREIGN_FORMATS:
        found = sorted(str(p.relative_to(d)) for pattern in patterns for p in d.glob(pattern))
        if found:
            return (
                f"{d} holds a {fmt} model ({', '.join(found[:3])}) and no safetensors weights; colbert-adapters "
                f"runs PyTorch models from safetensors and does not support {fmt}. Pass the checkpoint it was "
                "exported from instead: a directory with config.json and model.safetensors (a PyLate, "
                "sentence-transformers or transformers save), or its Hub id"
            )
    for marker in ("colbert-index.json", "store.sqlite", "colbert_adapters.json"):
        if (d / marker).is_file():
            return (
                f"{d} is a colbert-adapters index ({marker}), not a model checkpoint; pass it as the index "
                "(`colbert-adapters search DIR QUERY`, `MultiVectorStore.open(DIR)`), which reopens with the model "
                "it records, and pass the model's directory or Hub id as the model"
            )
    return None


def read_checkpoint(root: Path) -> CheckpointFiles:
    """Read the configuration files of a checkpoint directory (both PyLate layouts and plain models).

    Raises:
        CheckpointError: the directory is not a checkpoint, or its files are inconsistent.
    """
    modules_path = root / "modules.json"
    transformer_dir = root
    dense: list[DenseSpec] = []
    if modules_path.is_file():
        modules = _read_json(modules_path, "modules.json")
        if not isinstance(modules, list) or not modules:
            raise CheckpointError(f"{modules_path} must list the model's modules")
        for m in sorted(modules, key=lambda m: int(m.get("idx", 0))):
            mtype = str(m.get("type", ""))
            mpath = root / str(m.get("path", ""))
            short = mtype.rsplit(".", 1)[-1]
            if short == "Transformer":
                transformer_dir = mpath
            elif short == "Dense":
                dense.append(_read_dense(mpath))
            elif short in ("Pooling", "Normalize"):
                logger.debug("ignoring %s module (token vectors are taken before pooling)", mtype)
            else:
                raise CheckpointError(
                    f"modules.json lists a {mtype!r} module, which colbert-adapters does not know how to apply to "
                    "token vectors; supported modules are Transformer, Dense (and Pooling/Normalize, ignored)"
                )
    config_path = transformer_dir / "config.json"
    if not config_path.is_file():
        foreign = _foreign_format_error(transformer_dir)
        if foreign is not None:
            raise CheckpointError(foreign)
        raise CheckpointError(
            f"{root} is not a model checkpoint: no config.json in {transformer_dir}. Pass a directory saved by "
            "PyLate, sentence-transformers or transformers, or a Hub id like 'lightonai/GTE-ModernColBERT-v1'"
        )
    config = _read_json(config_path, "config.json")
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object")
    if (config.get("architectures") or [""])[0] == "HF_ColBERT":
        raise CheckpointError(
            "this is a Stanford-format ColBERT checkpoint (HF_ColBERT); convert it to the PyLate format first "
            "(load it once with `pylate.models.ColBERT(...)` and `.save(dir)`)"
        )
    weight_files = _weight_files(transformer_dir, "the transformer backbone")

    st_path = root / "config_sentence_transformers.json"
    st_config = _read_json(st_path, "config_sentence_transformers.json") if st_path.is_file() else {}
    if not isinstance(st_config, dict):
        raise CheckpointError(f"{st_path} must hold a JSON object")
    unknown = sorted(set(st_config) - _KNOWN_ST_KEYS)
    if unknown:
        warnings.warn(
            f"config_sentence_transformers.json has keys colbert-adapters does not use: {unknown}; they are ignored",
            UserWarning,
            stacklevel=3,
        )
    sbert_path = transformer_dir / "sentence_bert_config.json"
    sbert = _read_json(sbert_path, "sentence_bert_config.json") if sbert_path.is_file() else {}
    is_colbert = bool(dense) or "query_prefix" in st_config or str(st_config.get("model_type", "")) == "ColBERT"
    return CheckpointFiles(
        root=root,
        transformer_dir=transformer_dir,
        config=config,
        st_config=st_config,
        dense=dense,
        is_colbert=is_colbert,
        max_seq_length=sbert.get("max_seq_length"),
        do_lower_case=bool(sbert.get("do_lower_case", False)),
        weight_files=weight_files,
    )


def _read_dense(d: Path) -> DenseSpec:
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"Dense module directory {d} has no config.json; the checkpoint is incomplete")
    cfg = _read_json(cfg_path, "Dense config.json")
    try:
        in_f, out_f = int(cfg["in_features"]), int(cfg["out_features"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{cfg_path} lacks in_features/out_features: {err}") from err
    act_name = str(cfg.get("activation_function", "torch.nn.modules.linear.Identity"))
    if act_name not in _ACTIVATIONS:
        raise CheckpointError(
            f"{cfg_path}: unsupported activation_function {act_name!r}; supported: {list(_ACTIVATIONS)}"
        )
    if not (d / "model.safetensors").is_file():
        _weight_files(d, "the Dense projection")  # raises with the right message (pickle-only or missing)
    return DenseSpec(
        path=d,
        in_features=in_f,
        out_features=out_f,
        bias=bool(cfg.get("bias", True)),
        activation=_ACTIVATIONS[act_name],
        use_residual=bool(cfg.get("use_residual", False)),
    )


def resolve_settings(files: CheckpointFiles, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Settings with PyLate's precedence: explicit argument > config file > default.

    Plain (non-ColBERT) backbones get no prefixes and no query expansion by default: they were never
    trained with ``[Q]``/``[D]`` markers or ``[MASK]`` expansion.
    """
    defaults = dict(PYLATE_DEFAULTS)
    if not files.is_colbert:
        defaults.update(query_prefix="", document_prefix="", do_query_expansion=False)
        cap = files.max_seq_length or int(files.config.get("max_position_embeddings", 512))
        defaults["document_length"] = min(300, int(cap))
    out: dict[str, Any] = {}
    for key, default in defaults.items():
        if overrides.get(key) is not None:
            out[key] = overrides[key]
        elif files.st_config.get(key) is not None:
            out[key] = files.st_config[key]
        else:
            out[key] = default
    if not out["do_query_expansion"]:
        out["attend_to_expansion_tokens"] = False
    prompts = files.st_config.get("prompts") or {}
    name = files.st_config.get("default_prompt_name")
    out["prompt"] = prompts.get(name, "") if name else ""
    return out


def spare_tokens(vocab: Mapping[str, int], n: int = 2) -> list[str]:
    """The first ``n`` unused vocabulary entries (``[unused0]``, ``[unused1]``, ... or ``<unused0>``, ...), in order.

    Stanford ColBERT (and answerai-colbert-small-v1) use BERT's ``[unused0]`` / ``[unused1]`` as the query and
    document markers where PyLate adds ``[Q] `` / ``[D] ``.
    """
    numbered = []
    for token in vocab:
        m = _SPARE_TOKEN.match(token)
        if m:
            numbered.append((int(m.group(1) or m.group(2)), token))
    return [t for _, t in sorted(numbered)[:n]]


def prefix_advice(vocab: Mapping[str, int]) -> str:
    """What to pass as prefixes for a tokenizer: its ``[Q] ``/``[D] `` tokens, else its spare tokens, else none.

    Names both the keyword arguments and the command-line flags.
    """
    if "[Q] " in vocab and "[D] " in vocab:
        q, d = "[Q] ", "[D] "
        why = "The tokenizer has PyLate's '[Q] ' / '[D] ' tokens. If the model was trained with them"
    else:
        spare = spare_tokens(vocab)
        if len(spare) < 2:
            return (
                "The tokenizer has no '[Q] ' / '[D] ' or unused tokens to serve as markers: keep query_prefix='' "
                "and document_prefix='' (command line: --query-prefix '' --document-prefix '')"
            )
        q, d = spare
        why = (
            "The tokenizer has no '[Q] ' / '[D] ' tokens. If the model was trained with two of its unused tokens "
            "as markers (as answerai-colbert-small-v1 was with '[unused0]' / '[unused1]')"
        )
    return (
        f"{why}, pass query_prefix={q!r}, document_prefix={d!r} (command line: --query-prefix '{q}' "
        f"--document-prefix '{d}'); a backbone trained without markers takes query_prefix='', document_prefix=''"
    )


def describe_plain_backbone(name: str, files: CheckpointFiles, settings: Mapping[str, Any], dim: int) -> str:
    """One paragraph saying what a checkpoint without a PyLate configuration is encoded with."""
    skip = list(settings["skiplist_words"])
    if sorted(skip) == sorted(string.punctuation):
        skip_text = "the 32 characters of string.punctuation"
    elif not skip:
        skip_text = "none"
    else:
        skip_text = f"{len(skip)} tokens"
    return (
        f"{name} is a plain {files.config.get('model_type', 'transformers')} backbone (no PyLate configuration: "
        "no query_prefix in config_sentence_transformers.json, no Dense projection). It is encoded with: token "
        f"vectors = the last hidden states, no projection (dim {dim}); query_prefix={settings['query_prefix']!r}, "
        f"document_prefix={settings['document_prefix']!r}; query_length={settings['query_length']}, "
        f"document_length={settings['document_length']}; do_query_expansion={settings['do_query_expansion']}, "
        f"attend_to_expansion_tokens={settings['attend_to_expansion_tokens']}; document skiplist: {skip_text}. "
        "Each of these can be set (from_pretrained keyword arguments; command line: --query-prefix, "
        "--document-prefix, --query-length, --document-length, --query-expansion, --attend-to-expansion-tokens, "
        "--skiplist)."
    )


def load_tokenizer(path: Any, trust_remote_code: bool) -> Any:
    """The checkpoint's tokenizer (``tokenizer.json`` directly when AutoTokenizer cannot read the directory)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        tj = os.path.join(str(path), "tokenizer.json")
        if os.path.isfile(tj):
            from transformers import PreTrainedTokenizerFast

            logger.debug("AutoTokenizer failed (%s); loading tokenizer.json directly", err)
            return PreTrainedTokenizerFast(tokenizer_file=tj)  # type: ignore[no-untyped-call]
        raise CheckpointError(f"cannot load a tokenizer from {path}: {err}") from err


def load_hf_model(files: CheckpointFiles, trust_remote_code: bool) -> Any:
    """The backbone (its encoder for an encoder-decoder), safetensors only."""
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(
            str(files.transformer_dir), trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise CheckpointError(
                f"{files.transformer_dir} needs custom modelling code; pass trust_remote_code=True only if you "
                "trust its author"
            ) from err
        raise CheckpointError(f"cannot load the backbone in {files.transformer_dir}: {err}") from err
    if hasattr(model, "get_encoder") and getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()
    return model
