"""LangChain retriever over the same tag index (optional extra: ``pip install 'sotai-generator[langchain]'``).

    from sotai.rag.langchain import SotaiTagRetriever
    retriever = SotaiTagRetriever.from_settings(get_settings(), top_k=20)
    docs = retriever.invoke("銀髪の少女が夜の桜の下で微笑んでいる")
    docs[0].page_content   # "1girl"
    docs[0].metadata       # {"score": ..., "category": "general", "reason": {"span": ..., "signal": ...}}

Only this module imports langchain-core; `sotai.rag` works without it.
"""

from __future__ import annotations

from typing import Any

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "sotai.rag.langchain needs langchain-core: pip install 'sotai-generator[langchain]'"
    ) from exc

from pydantic import ConfigDict

from sotai.limits import TOP_K_RANGE, check_int
from sotai.rag.retriever import TagRetriever


class SotaiTagRetriever(BaseRetriever):
    """A LangChain `BaseRetriever`: one Document per tag candidate, best first."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tag_retriever: Any  # sotai.rag.TagRetriever (Any: pydantic need not know the class)
    top_k: int = 20

    @classmethod
    def from_settings(cls, settings, top_k: int = 20) -> "SotaiTagRetriever":
        return cls(tag_retriever=TagRetriever.from_settings(settings), top_k=check_int("top_k", top_k, *TOP_K_RANGE))

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [
            Document(page_content=c.tag, metadata={"score": c.score, "category": c.category, "reason": c.reason})
            for c in self.tag_retriever.retrieve(query, self.top_k)
        ]
