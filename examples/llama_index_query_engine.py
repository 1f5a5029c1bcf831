"""A LlamaIndex query engine on ColBERT: a managed index that encodes its own text, plus a MaxSim reranker.

    pip install "colbert-adapters[llamaindex]"
    python examples/llama_index_query_engine.py                          # GTE-ModernColBERT-v1 from the Hub
    python examples/llama_index_query_engine.py --model ./my-checkpoint  # a local checkpoint directory
    python examples/llama_index_query_engine.py --persist-dir ./li-index # save, and reload on the next run

It runs offline: the LLM is LlamaIndex's ``MockLLM`` (it echoes part of the prompt), so no API key is
needed. Pass any LlamaIndex LLM to ``as_query_engine(llm=...)`` instead. No embedding model is involved:
``ColBERTIndex`` encodes nodes with the ColBERT encoder, so ``Settings.embed_model`` is never used.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from colbert_adapters.integrations.llama_index import ColBERTIndex, ColBERTRerank
from llama_index.core import Document
from llama_index.core.llms import MockLLM

from colbert_adapters import ColBERTEncoder, ColBERTError

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="lightonai/GTE-ModernColBERT-v1", help="Hub id or local checkpoint dir")
    ap.add_argument("--corpus", type=Path, default=HERE / "corpus", help="folder of .md/.txt files to index")
    ap.add_argument("--persist-dir", type=Path, default=None, help="save the index here; reload it if present")
    ap.add_argument("--question", default="Which city is the capital of France?")
    ap.add_argument("-k", "--similarity-top-k", type=int, default=4, help="nodes retrieved before reranking")
    ap.add_argument("--top-n", type=int, default=2, help="nodes kept by the reranker")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("llama_index_query_engine")

    try:
        encoder = ColBERTEncoder.from_pretrained(args.model)
    except ColBERTError as err:
        log.error("%s", err)
        return 2
    if args.persist_dir is not None and (args.persist_dir / "colbert_index.json").is_file():
        index = ColBERTIndex.from_persist_dir(args.persist_dir, encoder)
        log.info("reloaded %d nodes from %s", index.store.count(), args.persist_dir)
    else:
        files = sorted(p for p in args.corpus.iterdir() if p.suffix in {".md", ".txt"})
        docs = [Document(text=p.read_text(encoding="utf-8"), id_=p.stem, metadata={"source": p.name}) for p in files]
        index = ColBERTIndex.from_documents(docs, encoder=encoder)
        log.info("indexed %d documents (%d nodes)", len(docs), index.store.count())
        if args.persist_dir is not None:
            index.persist(args.persist_dir)
            log.info("saved the index to %s", args.persist_dir)

    reranker = ColBERTRerank(index=index, top_n=args.top_n)  # reuses the index's stored token vectors
    engine = index.as_query_engine(
        llm=MockLLM(max_tokens=24), similarity_top_k=args.similarity_top_k, node_postprocessors=[reranker]
    )
    response = engine.query(args.question)

    print(f"> {args.question}")
    for rank, item in enumerate(response.source_nodes, 1):
        snippet = " ".join(item.node.get_content().split())[:80]
        print(f"  {rank}. {item.score:7.3f}  {item.node.metadata.get('source', ''):<20} {snippet}")
    print(f"answer: {str(response).strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
