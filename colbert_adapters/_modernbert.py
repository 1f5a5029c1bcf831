"""A ModernBERT encoder forward pass that runs packed (unpadded) sequences of any length.

Same weights and the same math as ``transformers.ModernBertModel`` (the path PyLate runs), organised so
that memory grows linearly with the document length:

* token-wise layers (embeddings, norms, projections, MLP) run on the packed ``(n_tokens, hidden)`` matrix of
  the whole batch: no padding rows are ever computed;
* global-attention layers run ``scaled_dot_product_attention`` per sequence **without a mask** (each
  sequence is unpadded, so none is needed) — PyTorch's memory-efficient kernel, O(n) memory;
* sliding-window layers (``|i - j| <= local_attention // 2``) run per sequence in query blocks that attend
  to their key band only, with a small band mask: O(n * window) memory and time instead of O(n^2).

The reference path builds dense ``n x n`` masks, which is what makes a 32k-token document run out of memory
(``shared/reference/long-context.md``). Rows that are computed but not attended (query-expansion
``[MASK]`` tokens with ``attend_to_expansion_tokens=False``) are handled by giving each sequence a key
prefix length ``n_keys <= n_rows``: padding is always on the right, so the attended keys are a prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError

__all__ = ["ModernBertSpec", "PackedModernBert", "load_packed_modernbert"]

# Query block of the sliding-window attention. Sequences up to this length use one block (one small mask).
_LOCAL_BLOCK = 512
# Batches whose longest sequence is at most this long run attention as one padded, masked SDPA call per
# layer (like the reference); longer ones run one unpadded sequence at a time.
_PADDED_MAX = 1024
# Token-wise layers process at most this many rows at once, bounding the MLP's intermediate activations.
_ROW_CHUNK = 16384


@dataclass(frozen=True)
class ModernBertSpec:
    """The architecture parameters read from a ModernBERT ``config.json`` (either on-disk layout)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    layer_types: tuple[str, ...]
    global_rope_theta: float
    local_rope_theta: float
    local_attention: int
    norm_eps: float
    norm_bias: bool
    attention_bias: bool
    mlp_bias: bool
    hidden_activation: str
    max_position_embeddings: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ModernBertSpec:
        """Parse a ModernBERT ``config.json``: transformers-4.48 keys (``global_rope_theta``,
        ``global_attn_every_n_layers``) or transformers-5 keys (``layer_types``, ``rope_parameters``)."""
        try:
            n_layers = int(cfg["num_hidden_layers"])
            hidden = int(cfg["hidden_size"])
            heads = int(cfg["num_attention_heads"])
            spec_kwargs: dict[str, Any] = dict(
                vocab_size=int(cfg["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(cfg["intermediate_size"]),
                num_hidden_layers=n_layers,
                num_attention_heads=heads,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"config.json of a ModernBERT model lacks a required field: {err}") from err
        if hidden % heads:
            raise CheckpointError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
        layer_types = cfg.get("layer_types")
        if layer_types is None:
            every = int(cfg.get("global_attn_every_n_layers", 3))
            layer_types = ["sliding_attention" if i % every else "full_attention" for i in range(n_layers)]
        layer_types = tuple(str(t) for t in layer_types)
        if len(layer_types) != n_layers or set(layer_types) - {"full_attention", "sliding_attention"}:
            raise CheckpointError(f"config.json has unsupported layer_types {layer_types!r}")
        rope = cfg.get("rope_parameters") or {}
        thetas = {}
        for kind, legacy, default in (
            ("full_attention", "global_rope_theta", 160000.0),
            ("sliding_attention", "local_rope_theta", 10000.0),
        ):
            params = rope.get(kind) or {}
            rope_type = params.get("rope_type", "default")
            if rope_type != "default" or cfg.get("rope_scaling"):
                raise CheckpointError(
                    f"RoPE type {rope_type!r} / rope_scaling is not supported by colbert-adapters' ModernBERT path"
                )
            thetas[kind] = float(params.get("rope_theta", cfg.get(legacy, default)))
        act = str(cfg.get("hidden_activation", "gelu"))
        if act not in _ACTIVATIONS:
            raise CheckpointError(f"unsupported hidden_activation {act!r}; expected one of {sorted(_ACTIVATIONS)}")
        return cls(
            **spec_kwargs,
            layer_types=layer_types,
            global_rope_theta=thetas["full_attention"],
            local_rope_theta=thetas["sliding_attention"],
            local_attention=int(cfg.get("local_attention", 128)),
            norm_eps=float(cfg.get("norm_eps", 1e-5)),
            norm_bias=bool(cfg.get("norm_bias", False)),
            attention_bias=bool(cfg.get("attention_bias", False)),
            mlp_bias=bool(cfg.get("mlp_bias", False)),
            hidden_activation=act,
            max_position_embeddings=int(cfg.get("max_position_embeddings", 8192)),
        )


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


class _Layer(nn.Module):
    def __init__(self, spec: ModernBertSpec, index: int) -> None:
        super().__init__()
        h = spec.hidden_size
        self.attn_norm: nn.Module = (
            nn.Identity() if index == 0 else nn.LayerNorm(h, eps=spec.norm_eps, bias=spec.norm_bias)
        )
        self.Wqkv = nn.Linear(h, 3 * h, bias=spec.attention_bias)
        self.Wo = nn.Linear(h, h, bias=spec.attention_bias)
        self.mlp_norm = nn.LayerNorm(h, eps=spec.norm_eps, bias=spec.norm_bias)
        self.Wi = nn.Linear(h, 2 * spec.intermediate_size, bias=spec.mlp_bias)
        self.Wo_mlp = nn.Linear(spec.intermediate_size, h, bias=spec.mlp_bias)
        self.is_global = spec.layer_types[index] == "full_attention"

    # state-dict key of ours -> key in a transformers ModernBertModel checkpoint
    KEYS: ClassVar[dict[str, str]] = {
        "attn_norm.weight": "attn_norm.weight",
        "attn_norm.bias": "attn_norm.bias",
        "Wqkv.weight": "attn.Wqkv.weight",
        "Wqkv.bias": "attn.Wqkv.bias",
        "Wo.weight": "attn.Wo.weight",
        "Wo.bias": "attn.Wo.bias",
        "mlp_norm.weight": "mlp_norm.weight",
        "mlp_norm.bias": "mlp_norm.bias",
        "Wi.weight": "mlp.Wi.weight",
        "Wi.bias": "mlp.Wi.bias",
        "Wo_mlp.weight": "mlp.Wo.weight",
        "Wo_mlp.bias": "mlp.Wo.bias",
    }


class PackedModernBert(nn.Module):
    """ModernBERT backbone over packed sequences; returns last hidden states (after ``final_norm``)."""

    def __init__(self, spec: ModernBertSpec) -> None:
        super().__init__()
        self.spec = spec
        h = spec.hidden_size
        self.tok_embeddings = nn.Embedding(spec.vocab_size, h)
        self.emb_norm = nn.LayerNorm(h, eps=spec.norm_eps, bias=spec.norm_bias)
        self.layers = nn.ModuleList(_Layer(spec, i) for i in range(spec.num_hidden_layers))
        self.final_norm = nn.LayerNorm(h, eps=spec.norm_eps, bias=spec.norm_bias)
        self._act = _ACTIVATIONS[spec.hidden_activation]
        hd = spec.head_dim
        for name, theta in (("global", spec.global_rope_theta), ("local", spec.local_rope_theta)):
            inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
            self.register_buffer(f"inv_freq_{name}", inv, persistent=False)

    # ------------------------------------------------------------------------------------------------
    def load_hf_state_dict(self, sd: Mapping[str, torch.Tensor]) -> None:
        """Load weights saved by ``transformers.ModernBertModel`` (keys without prefix, or ``model.`` prefix)."""
        if not any(k.startswith("embeddings.") for k in sd) and any(k.startswith("model.") for k in sd):
            sd = {k[len("model.") :]: v for k, v in sd.items() if k.startswith("model.")}
        mapping = {
            "tok_embeddings.weight": "embeddings.tok_embeddings.weight",
            "emb_norm.weight": "embeddings.norm.weight",
            "emb_norm.bias": "embeddings.norm.bias",
            "final_norm.weight": "final_norm.weight",
            "final_norm.bias": "final_norm.bias",
        }
        for i in range(self.spec.num_hidden_layers):
            for ours, theirs in _Layer.KEYS.items():
                mapping[f"layers.{i}.{ours}"] = f"layers.{i}.{theirs}"
        own = self.state_dict()
        new: dict[str, torch.Tensor] = {}
        for ours, ref in own.items():
            src = mapping.get(ours)
            if src is None or src not in sd:
                raise CheckpointError(
                    f"model.safetensors lacks the ModernBERT weight {src or ours!r}; the checkpoint is incomplete "
                    "or not a ModernBertModel (re-save it with transformers' save_pretrained)"
                )
            t = sd[src]
            if tuple(t.shape) != tuple(ref.shape):
                raise CheckpointError(
                    f"weight {src!r} has shape {tuple(t.shape)}, config.json implies {tuple(ref.shape)}; "
                    "config.json and model.safetensors do not belong together"
                )
            new[ours] = t
        self.load_state_dict(new, strict=True)

    # ------------------------------------------------------------------------------------------------
    def _rope(self, n: int, which: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        inv = getattr(self, f"inv_freq_{which}").to(device)
        pos = torch.arange(n, device=device, dtype=torch.float32)
        freqs = torch.outer(pos, inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()  # (n, head_dim) float32

    @staticmethod
    def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x: (heads, n, hd); rotation in float32 like transformers, result back in x's dtype.
        # cos/sin are cat(freqs, freqs): both halves share them, so x*cos + rotate_half(x)*sin is
        # [x1*c - x2*s, x2*c + x1*s], written into one output buffer (no negated copy, no concatenation;
        # these element-wise passes over (batch, heads, n, hd) cost as much as a fifth of a forward on CPU).
        xf = x.float()
        half = xf.shape[-1] // 2
        c, s = cos[..., :half], sin[..., :half]
        x1, x2 = xf[..., :half], xf[..., half:]
        out = torch.empty(xf.shape, dtype=torch.float32, device=xf.device)
        lo, hi = out[..., :half], out[..., half:]
        torch.mul(x1, c, out=lo)
        lo.sub_(x2 * s)
        torch.mul(x2, c, out=hi)
        hi.add_(x1 * s)
        return out.to(x.dtype)

    def _rows(self, fn: Any, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] <= _ROW_CHUNK:
            return fn(x)  # type: ignore[no-any-return]
        return torch.cat([fn(x[i : i + _ROW_CHUNK]) for i in range(0, x.shape[0], _ROW_CHUNK)], dim=0)

    def _attention(
        self,
        qkv: torch.Tensor,
        n_keys: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
        is_global: bool,
    ) -> torch.Tensor:
        """One sequence: ``qkv`` (n, 3*hidden) -> (n, hidden). Keys/values are the first ``n_keys`` rows."""
        n = qkv.shape[0]
        heads, hd = self.spec.num_attention_heads, self.spec.head_dim
        q, k, v = qkv.view(n, 3, heads, hd).permute(1, 2, 0, 3).unbind(0)  # each (heads, n, hd)
        q = self._apply_rope(q, cos, sin)
        k = self._apply_rope(k[:, :n_keys], cos[:n_keys], sin[:n_keys])
        v = v[:, :n_keys]
        w = self.spec.local_attention // 2
        if is_global or max(n, n_keys) - 1 <= w:
            # Global layer, or a sequence short enough that every key lies inside every query's window.
            out = F.scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0))[0]
        else:
            out = torch.empty_like(q)
            pos = torch.arange(n, device=qkv.device)
            for start in range(0, n, _LOCAL_BLOCK):
                stop = min(start + _LOCAL_BLOCK, n)
                k0, k1 = max(0, start - w), min(n_keys, stop + w)
                if k1 <= k0:  # no attended key within reach (cannot happen for real tokens)
                    out[:, start:stop] = 0
                    continue
                band = (pos[start:stop, None] - pos[None, k0:k1]).abs() <= w
                # Rows with no key in their band (padding-like rows far past n_keys) attend to nothing in the
                # reference and are never kept; give them a harmless key instead of a NaN softmax.
                empty = ~band.any(dim=1)
                if bool(empty.any()):
                    band[empty, 0] = True
                out[:, start:stop] = F.scaled_dot_product_attention(
                    q[:, start:stop].unsqueeze(0),
                    k[:, k0:k1].unsqueeze(0),
                    v[:, k0:k1].unsqueeze(0),
                    attn_mask=band,
                )[0]
        return out.permute(1, 0, 2).reshape(n, heads * hd)

    def forward(self, input_ids: torch.Tensor, lengths: Sequence[int], key_lengths: Sequence[int]) -> torch.Tensor:
        """Encode packed sequences.

        Args:
            input_ids: int64 ``(n_total,)``, the sequences concatenated.
            lengths: rows of each sequence (sum = ``n_total``).
            key_lengths: per sequence, how many leading rows are attended as keys (``<= length``).

        Returns:
            ``(n_total, hidden)`` last hidden states in the module's dtype.
        """
        x = self._rows(lambda t: self.emb_norm(self.tok_embeddings(t)), input_ids)
        device = x.device
        lengths = [int(n) for n in lengths]
        key_lengths = [int(n) for n in key_lengths]
        n_max = max(lengths) if lengths else 0
        ropes = {
            True: self._rope(n_max, "global", device),
            False: self._rope(n_max, "local", device),
        }
        if len(lengths) > 1 and n_max <= _PADDED_MAX:
            attend = self._padded_attention(lengths, key_lengths, ropes, device)
        else:
            attend = self._sequential_attention(lengths, key_lengths, ropes)
        for module in self.layers:
            layer = cast(_Layer, module)
            qkv = self._rows(lambda t, layer=layer: layer.Wqkv(layer.attn_norm(t)), x)
            attn = attend(qkv, layer.is_global)
            del qkv
            x.add_(self._rows(layer.Wo, attn))  # in place: x is this forward's own buffer
            del attn
            x.add_(
                self._rows(
                    lambda t, layer=layer: layer.Wo_mlp(self._glu(layer.Wi(layer.mlp_norm(t)))),
                    x,
                )
            )
        return self._rows(self.final_norm, x)

    def _sequential_attention(
        self,
        lengths: list[int],
        key_lengths: list[int],
        ropes: dict[bool, tuple[torch.Tensor, torch.Tensor]],
    ) -> Callable[[torch.Tensor, bool], torch.Tensor]:
        """Attention one unpadded sequence at a time: O(n) memory, for long documents."""
        offsets = [0]
        for n in lengths:
            offsets.append(offsets[-1] + n)

        def attend(qkv: torch.Tensor, is_global: bool) -> torch.Tensor:
            out = torch.empty((qkv.shape[0], self.spec.hidden_size), dtype=qkv.dtype, device=qkv.device)
            cos_all, sin_all = ropes[is_global]
            for i, n in enumerate(lengths):
                a, b = offsets[i], offsets[i + 1]
                out[a:b] = self._attention(qkv[a:b], key_lengths[i], cos_all[:n], sin_all[:n], is_global)
            return out

        return attend

    def _padded_attention(
        self,
        lengths: list[int],
        key_lengths: list[int],
        ropes: dict[bool, tuple[torch.Tensor, torch.Tensor]],
        device: torch.device,
    ) -> Callable[[torch.Tensor, bool], torch.Tensor]:
        """Attention for a batch of short sequences as one padded SDPA call per layer (few, large kernels).

        Same masks as the reference: padding keys masked out; sliding-window layers also mask ``|i - j| > w``.
        Padding query rows are computed and dropped; a padding row with no visible key attends to itself so
        no NaN appears.
        """
        heads, hd, h = self.spec.num_attention_heads, self.spec.head_dim, self.spec.hidden_size
        b, t = len(lengths), max(lengths)
        pos = torch.arange(t, device=device)
        lens = torch.tensor(lengths, device=device)
        rows = (pos[None, :] < lens[:, None]).reshape(-1)  # packed rows inside the (b * t) padded grid
        # All sequences of one length (a batch of documents truncated at document_length, typically): the packed
        # rows are the padded grid already, no scatter into zeros and gather back per layer.
        row_index: torch.Tensor | None = None if bool(rows.all()) else rows.nonzero().squeeze(1)
        keys = pos[None, :] < torch.tensor(key_lengths, device=device)[:, None]  # (b, t)
        w = self.spec.local_attention // 2
        masks: dict[bool, torch.Tensor | None] = {}
        masks[True] = None if bool(keys.all()) else keys[:, None, None, :]
        if t - 1 <= w:
            masks[False] = masks[True]
        else:
            local = keys[:, None, :] & ((pos[:, None] - pos[None, :]).abs() <= w)[None]  # (b, t, t)
            blind = ~local.any(dim=2)
            if bool(blind.any()):
                local = local | (blind[:, :, None] & torch.eye(t, dtype=torch.bool, device=device)[None])
            masks[False] = local[:, None]

        def attend(qkv: torch.Tensor, is_global: bool) -> torch.Tensor:
            if row_index is None:
                padded = qkv
            else:
                padded = qkv.new_zeros((b * t, qkv.shape[1]))
                padded[row_index] = qkv
            q, k, v = padded.view(b, t, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)  # (b, heads, t, hd)
            cos, sin = ropes[is_global]
            q = self._apply_rope(q, cos[:t], sin[:t])
            k = self._apply_rope(k, cos[:t], sin[:t])
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=masks[is_global])
            out = out.permute(0, 2, 1, 3).reshape(b * t, h)
            return out if row_index is None else out[row_index]

        return attend

    def _glu(self, t: torch.Tensor) -> torch.Tensor:
        inp, gate = t.chunk(2, dim=-1)
        out: torch.Tensor = self._act(inp)
        return out.mul_(gate)


def load_packed_modernbert(config: Mapping[str, Any], weight_files: Sequence[Any]) -> PackedModernBert:
    """A :class:`PackedModernBert` built from a transformers ``config.json`` (``config``) and its safetensors
    ``weight_files`` (read with ``safetensors``: no pickle)."""
    from safetensors.torch import load_file

    model = PackedModernBert(ModernBertSpec.from_config(config))
    sd: dict[str, torch.Tensor] = {}
    for f in weight_files:
        sd.update(load_file(str(f)))
    model.load_hf_state_dict(sd)
    return model
