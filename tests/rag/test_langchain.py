"""The optional LangChain adapter returns the same candidates as Documents."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")


def test_langchain_retriever_wraps_the_tag_retriever(tiny_retriever):
    from langchain_core.retrievers import BaseRetriever

    from sotai.rag.langchain import SotaiTagRetriever

    lc = SotaiTagRetriever(tag_retriever=tiny_retriever, top_k=5)
    assert isinstance(lc, BaseRetriever)
    docs = lc.invoke("銀髪の少女が夜の桜の下で微笑んでいる")
    expected = tiny_retriever.retrieve("銀髪の少女が夜の桜の下で微笑んでいる", 5)
    assert [d.page_content for d in docs] == [c.tag for c in expected]
    assert docs[0].metadata["reason"]["signal"] in {"japanese_name", "alias", "gloss", "embedding"}


def test_importing_sotai_rag_does_not_import_langchain():
    import subprocess
    import sys

    code = "import sys, sotai.rag; print('langchain_core' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
