"""Qdrant end to end, offline: an embedded Qdrant Edge index, search with filters, then a move to a collection.

Runs without a server or a model download (a deterministic FakeEncoder stands in for ColBERTEncoder):

    python examples/qdrant_setup.py [WORKDIR]

With a real model, replace FakeEncoder by ``ColBERTEncoder.from_pretrained("lightonai/GTE-ModernColBERT-v1")``.
To move to a server, replace the local-mode target by ``QdrantBackend.from_url("http://host:6333",
collection_name="docs", api_key=...)`` or run ``colbert-adapters qdrant copy WORKDIR/edge http://host:6333
--to-collection docs``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from colbert_adapters.backends.qdrant import QdrantBackend, QdrantCollectionConfig, copy_collection, setup_collection
from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

logger = logging.getLogger("examples.qdrant_setup")

DOCS = {
    "cat": ("The cat sat on the warm mat all afternoon", {"topic": "pets", "year": 2021}),
    "dog": ("Dogs bark loudly at the mail carrier", {"topic": "pets", "year": 2022}),
    "rust": ("Rust programs manage memory without a garbage collector", {"topic": "code", "year": 2022}),
    "qdrant": ("Qdrant stores token vectors and reranks them with MaxSim", {"topic": "code", "year": 2024}),
}


def main(workdir: Path) -> None:
    encoder = FakeEncoder(dim=32)

    # 1. Create the Edge index explicitly: float16 storage, a payload index on "topic".
    config = QdrantCollectionConfig(dim=encoder.dim, datatype="float16", payload_indexes={"topic": "keyword"})
    setup_collection(workdir / "edge", config, model_id=encoder.model_id).close()

    # 2. Index and search through the store (two-stage search by default).
    with MultiVectorStore(encoder, backend=QdrantBackend.edge(workdir / "edge")) as store:
        store.add([t for t, _ in DOCS.values()], ids=list(DOCS), metadatas=[m for _, m in DOCS.values()])
        for hit in store.search("which animal sat on the mat", k=2):
            logger.info("search: %s %.3f %s", hit.id, hit.score, hit.text)
        for hit in store.search("memory and vectors", k=2, filter={"topic": "code", "year": [2022, 2024]}):
            logger.info("filtered: %s %.3f", hit.id, hit.score)

    # 3. Move up: stream the Edge index into a qdrant-client collection (local mode here, a server in production).
    with (
        QdrantBackend.edge(workdir / "edge") as source,
        QdrantBackend.local(workdir / "local", collection_name="docs") as target,
    ):
        n = copy_collection(source, target)
        logger.info("copied %d documents to %s (model %s)", n, target.location, target.model_id)
    with MultiVectorStore(encoder, backend=QdrantBackend.local(workdir / "local", collection_name="docs")) as store:
        logger.info("local mode top hit: %s", store.search("barking dogs", k=1)[0].id)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
