"""The LlamaIndex node postprocessor: reranking nodes with exact ColBERT MaxSim."""

from __future__ import annotations

import os

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from ...errors import InvalidInputError
from ...store import MultiVectorStore
from ...types import Encoder
from .._common import check_query, load_encoder, rerank_texts, resolve_store
from ._index import ColBERTIndex

__all__ = ["ColBERTRerank"]

dispatcher = get_dispatcher(__name__)

# --------------------------------------------------------------------------------------------------- reranker


class ColBERTRerank(BaseNodePostprocessor):
    """LlamaIndex node postprocessor that reranks nodes with exact ColBERT MaxSim.

    Each node's content with its embeddable metadata (``MetadataMode.EMBED``, as LlamaIndex embeds nodes)
    is scored against the query by :func:`colbert_adapters.scoring.rerank` (sum over query tokens of the
    best cosine). Returns the best ``top_n`` as new ``NodeWithScore`` objects holding copies of the nodes:
    the caller's nodes are never mutated. With ``keep_retrieval_score`` the previous score is kept in the
    copy's ``metadata["retrieval_score"]``.

    Construct it as the official ``llama-index-postprocessor-colbert-rerank`` is constructed:
    ``ColBERTRerank(model="lightonai/GTE-ModernColBERT-v1", top_n=3, device="cpu", keep_retrieval_score=True)``
    (a Hub id or a local checkpoint path, loaded as a :class:`~colbert_adapters.encoder.ColBERTEncoder` with the
    model's own markers, projection and lengths); it reranks any nodes, no index is needed. ``tokenizer=`` is
    accepted only when it names the model itself: the tokenizer saved with the checkpoint is always the one
    used. Or pass an ``encoder``.

    Give it ``index=`` (a :class:`ColBERTIndex`) or ``store=`` and nodes the index holds (same id and text)
    are scored with their stored token vectors instead of being re-encoded; the others are encoded in one
    batched call. An empty node list returns ``[]``.

    Args:
        encoder: the ColBERT encoder (taken from ``store``/``index`` when omitted).
        model: Hub id or local path of a ColBERT checkpoint to load, instead of ``encoder``/``store``/``index``.
        tokenizer: ``None`` or the same as ``model`` (the checkpoint's tokenizer is used).
        device: device for the model loaded from ``model`` (``None``: cuda, then mps, then cpu).
        store: optional store whose token vectors are reused.
        index: optional :class:`ColBERTIndex` whose token vectors are reused.
        top_n: number of nodes to keep (>= 1).
        batch_size: encoder batch size.
        keep_retrieval_score: keep the incoming score in ``metadata["retrieval_score"]`` of the copies.
        callback_manager: LlamaIndex callback manager.

    Raises:
        InvalidInputError: no model or encoder, ``model`` with ``encoder``/``store``/``index``, a ``tokenizer``
            other than the model, ``device`` without ``model``, or an encoder/store/index combination that mixes
            models or backends; at query time, a missing or blank query.
    """

    model: str = Field(default="", description="The model loaded (model=), or the encoder's model_id.")
    top_n: int = Field(default=5, gt=0, description="Number of nodes to return, best first.")
    batch_size: int = Field(default=32, gt=0, description="Encoder batch size.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the incoming score in metadata['retrieval_score'] of the copies."
    )
    _encoder: Encoder = PrivateAttr()
    _store: MultiVectorStore | None = PrivateAttr(default=None)

    def __init__(
        self,
        encoder: Encoder | None = None,
        *,
        model: str | os.PathLike[str] | None = None,
        tokenizer: str | os.PathLike[str] | None = None,
        device: str | None = None,
        store: MultiVectorStore | None = None,
        index: ColBERTIndex | None = None,
        top_n: int = 5,
        batch_size: int = 32,
        keep_retrieval_score: bool = False,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if encoder is not None and not isinstance(encoder, Encoder):
            raise InvalidInputError(
                f"ColBERTRerank: the first positional argument is the encoder, got {type(encoder).__name__}; pass "
                "model=, top_n= and the other options by keyword"
            )
        if model is not None:
            if encoder is not None or store is not None or index is not None:
                raise InvalidInputError("ColBERTRerank: pass model= (a checkpoint to load) or encoder=/store=/index=")
            if tokenizer is not None and os.fspath(tokenizer) != os.fspath(model):
                raise InvalidInputError(
                    f"ColBERTRerank: tokenizer={os.fspath(tokenizer)!r} differs from model={os.fspath(model)!r}; the "
                    "tokenizer saved with the ColBERT checkpoint is always used, so leave tokenizer= out"
                )
            encoder = load_encoder(model, device, owner="ColBERTRerank")
        elif tokenizer is not None or device is not None:
            raise InvalidInputError(
                "ColBERTRerank: tokenizer= and device= apply to the model loaded from model=; an encoder you pass "
                "already has its tokenizer and device"
            )
        if index is not None:
            if not isinstance(index, ColBERTIndex):
                raise InvalidInputError(f"index must be a ColBERTIndex, got {type(index).__name__}")
            if store is not None and store is not index.store:
                raise InvalidInputError(
                    "ColBERTRerank: got index= and a different store=; mixing backends would read vectors "
                    "from the wrong index. Pass one of them"
                )
            store = index.store
        if store is not None:
            store = resolve_store(store, encoder, None, owner="ColBERTRerank")
            encoder = encoder or store.encoder
        if encoder is None:
            raise InvalidInputError(
                "ColBERTRerank needs encoder= (or model=, a Hub id or checkpoint path; or store= / index=)"
            )
        super().__init__(  # type: ignore[call-arg]  # pydantic fields, not seen by mypy without the plugin
            model=os.fspath(model) if model is not None else encoder.model_id,
            top_n=top_n,
            batch_size=batch_size,
            keep_retrieval_score=keep_retrieval_score,
            callback_manager=callback_manager or CallbackManager([]),
        )
        self._encoder = encoder
        self._store = store

    @classmethod
    def class_name(cls) -> str:
        return "ColBERTRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InvalidInputError("ColBERTRerank needs the query: pass query_bundle= or query_str=")
        query = check_query(query_bundle.query_str, owner="ColBERTRerank")
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model))
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            result = rerank_texts(
                query,
                [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes],
                [n.node.node_id for n in nodes],
                stored_texts=[n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes],
                encoder=self._encoder,
                store=self._store,
                top_n=self.top_n,
                batch_size=self.batch_size,
            )
            reranked = [self._copy(nodes[i], score) for i, score in result.order]
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _copy(self, item: NodeWithScore, score: float) -> NodeWithScore:
        metadata = dict(item.node.metadata)
        if self.keep_retrieval_score:
            metadata["retrieval_score"] = item.score
        return NodeWithScore(node=item.node.model_copy(update={"metadata": metadata}), score=score)
