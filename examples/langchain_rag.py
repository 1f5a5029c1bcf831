"""A LangChain RAG pipeline on ColBERT: index texts, retrieve, rerank with stored vectors, prompt, answer.

    pip install "colbert-adapters[langchain]"
    python examples/langchain_rag.py                          # lightonai/GTE-ModernColBERT-v1 from the Hub
    python examples/langchain_rag.py --model ./my-checkpoint  # any local PyLate / sentence-transformers dir

It runs offline: the LLM is ``FakeListChatModel`` from langchain-core (it returns a canned answer), so the
example shows the retrieval half of RAG without an API key. Swap in any LangChain chat model
(``ChatOpenAI``, ``ChatOllama``, ...) where ``llm`` is built; nothing else changes.

Pipeline::

    question -> ColBERTVectorStore.as_retriever(k=4)          # MaxSim over the stored token vectors
             -> ColBERTRerank(top_n=2, store=...)              # exact MaxSim, reusing the stored vectors
             -> ChatPromptTemplate -> chat model -> StrOutputParser
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from colbert_adapters.integrations.langchain import ColBERTRerank, ColBERTVectorStore
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

from colbert_adapters import ColBERTEncoder, ColBERTError

HERE = Path(__file__).resolve().parent

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question using only this context. Cite the [source] you use.\n\n{context}"),
        ("human", "{question}"),
    ]
)


def format_docs(docs: list[Document]) -> str:
    """Join documents into one context block, each tagged with its source."""
    return "\n\n".join(f"[{d.metadata.get('source', d.id)}] {d.page_content.strip()}" for d in docs)


def build_chain(vectorstore: ColBERTVectorStore, llm: Any, *, k: int = 4, top_n: int = 2) -> Any:
    """``question -> {"docs": [...], "answer": str}``: retrieve ``k``, rerank to ``top_n``, answer."""
    retriever = vectorstore.as_retriever(search_kwargs={"k": k})
    reranker = ColBERTRerank(store=vectorstore.store, top_n=top_n)  # reuses the stored token vectors
    rerank = RunnableLambda(lambda x: list(reranker.compress_documents(x["candidates"], x["question"])))
    answer = (
        RunnableLambda(lambda x: {"context": format_docs(x["docs"]), "question": x["question"]})
        | PROMPT
        | llm
        | StrOutputParser()
    )
    return (
        RunnableParallel(candidates=retriever, question=RunnablePassthrough())
        | RunnablePassthrough.assign(docs=rerank)
        | RunnablePassthrough.assign(answer=answer)
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="lightonai/GTE-ModernColBERT-v1", help="Hub id or local checkpoint dir")
    ap.add_argument("--corpus", type=Path, default=HERE / "corpus", help="folder of .md/.txt files to index")
    ap.add_argument("--question", default="How does ColBERT score a document?")
    ap.add_argument("-k", type=int, default=4, help="documents retrieved before reranking")
    ap.add_argument("--top-n", type=int, default=2, help="documents kept by the reranker")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("langchain_rag")

    try:
        encoder = ColBERTEncoder.from_pretrained(args.model)
    except ColBERTError as err:
        log.error("%s", err)
        return 2
    files = sorted(p for p in args.corpus.iterdir() if p.suffix in {".md", ".txt"})
    vectorstore = ColBERTVectorStore(encoder=encoder)  # exact in-memory backend; pass store= for others
    vectorstore.add_documents(
        [Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": p.name}, id=p.stem) for p in files]
    )
    log.info("indexed %d documents", len(files))

    # Replace with a real chat model, e.g. langchain_ollama.ChatOllama(model="llama3.2").
    llm = FakeListChatModel(responses=["(FakeListChatModel) A real chat model would answer from the context."])
    result = build_chain(vectorstore, llm, k=args.k, top_n=args.top_n).invoke(args.question)

    print(f"> {args.question}")
    for rank, doc in enumerate(result["docs"], 1):
        snippet = " ".join(doc.page_content.split())[:80]
        print(f"  {rank}. {doc.metadata['relevance_score']:7.3f}  {doc.metadata['source']:<20} {snippet}")
    print(f"answer: {result['answer']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
