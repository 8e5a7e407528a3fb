"""`sotai.gateway`: the HTTP gateway (FastAPI): /v1 API, A1111-compatible /sdapi/v1, web page at `/`.

`create_app` loads on first use (PEP 562): `sotai gateway --help` reads only `commands.py`, without
FastAPI and gradio.
"""

__all__ = ["create_app"]


def __getattr__(name: str):
    if name != "create_app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .app import create_app

    return create_app
