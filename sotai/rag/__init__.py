"""RAG stage: Japanese scene text -> Danbooru tag candidates with reasons, then the selection.

    from sotai.rag import TagRetriever
    from sotai.rag.select import select_text
    retriever = TagRetriever.from_settings(get_settings())
    retriever.retrieve("銀髪の少女が夜の桜の下で微笑んでいる", top_k=20)   # ranked candidates
    select_text(retriever, "銀髪の少女が夜の桜の下で微笑んでいる").tags  # what goes into the prompt

The index and retriever are imported on first use: Dart imports `sotai.rag.conflicts` alone and
should not pay for pandas and FAISS.
"""

from importlib import import_module

from sotai.rag.candidate import CATEGORIES, SIGNALS, Candidate

_LAZY = {"TagIndex": "sotai.rag.index", "build_index": "sotai.rag.index", "cached_index": "sotai.rag.index",
         "TagRetriever": "sotai.rag.retriever"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sotai.rag' has no attribute {name!r}")


__all__ = ["CATEGORIES", "SIGNALS", "Candidate", "TagIndex", "TagRetriever", "build_index", "cached_index"]
