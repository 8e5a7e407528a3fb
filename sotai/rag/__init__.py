"""RAG stage: Japanese scene text -> Danbooru tag candidates with reasons.

    from sotai.rag import TagRetriever
    retriever = TagRetriever.from_settings(get_settings())
    retriever.retrieve("銀髪の少女が夜の桜の下で微笑んでいる", top_k=20)
"""

from sotai.rag.candidate import CATEGORIES, SIGNALS, Candidate
from sotai.rag.index import TagIndex, build_index, cached_index
from sotai.rag.retriever import TagRetriever

__all__ = ["CATEGORIES", "SIGNALS", "Candidate", "TagIndex", "TagRetriever", "build_index", "cached_index"]
