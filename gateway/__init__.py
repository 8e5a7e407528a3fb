"""`sotai.gateway`: the HTTP gateway (FastAPI): /v1 API, A1111-compatible /sdapi/v1, web page at `/`."""

from .app import create_app

__all__ = ["create_app"]
