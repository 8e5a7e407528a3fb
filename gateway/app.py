"""`create_app()`: the FastAPI gateway in front of Triton (API, A1111 API, web page).

It reaches Triton only through `sotai.client`. Safe defaults: binds 127.0.0.1 (see commands.py),
no CORS unless origins are given, a body size limit, and an API key when SOTAI_API_KEY is set.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

from fastapi import Depends, FastAPI

from sotai.settings import Settings, get_settings

from . import a1111, errors, routes
from .pool import TritonPool, parse_urls
from .security import MAX_BODY_BYTES, BodySizeLimit, api_key_dependency, key_matches
from .state import GatewayState

RETRY_AFTER_S = 5


def create_app(
    settings: Settings | None = None,
    *,
    triton_urls: str | Sequence[str] | None = None,
    protocol: str = "grpc",
    api_key: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    cors_origins: Sequence[str] = (),
    ui: bool = True,
    timeout_s: float = 600.0,
) -> FastAPI:
    """The gateway. `triton_urls`: one or several (comma-separated) Triton gRPC endpoints, round-robin;
    default SOTAI_TRITON_URL. `api_key`: default SOTAI_API_KEY (unset or "": no key needed)."""
    settings = settings or get_settings()
    if api_key is None and settings.api_key is not None:
        api_key = settings.api_key.get_secret_value()
    api_key = api_key or None  # "" turns the key off even when SOTAI_API_KEY is set
    pool = TritonPool(parse_urls(triton_urls or settings.triton_url), protocol=protocol, timeout_s=timeout_s,
                      retry_after_s=RETRY_AFTER_S, max_in_flight=settings.max_in_flight,
                      overload_retry_after_s=settings.overload_retry_after_s)
    state = GatewayState(settings=settings, pool=pool, retry_after_s=RETRY_AFTER_S)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await pool.start()  # grpc.aio channels belong to this event loop
        yield
        await pool.close()

    app = FastAPI(
        title="SotaiGenerator gateway",
        version="0.1.0",
        description="Japanese text -> Danbooru tags (RAG) -> Dart -> SDXL, served by Triton. "
                    "Errors: 422 names the field and its limit; 429 (with Retry-After) when too many jobs are in "
                    "flight; 503 (with Retry-After) while Triton is down; 504 when the request's timeout_s passed.",
        lifespan=lifespan,
    )
    app.state.sotai = state
    errors.install(app, RETRY_AFTER_S, settings.overload_retry_after_s)
    errors.document_errors(app)
    guard = [Depends(api_key_dependency(api_key))]
    app.include_router(routes.probes)
    app.include_router(routes.router, dependencies=guard)
    app.include_router(a1111.router, dependencies=guard)
    app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    # Added last: runs first, so a refusal under overload costs the least.
    app.add_middleware(errors.AdmissionLimit, pool=pool, retry_after_s=settings.overload_retry_after_s)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"])
    if ui:
        import gradio as gr

        from .ui import build_ui

        # With a key set, the page asks for it as the password (any user name).
        auth = (lambda _user, password: key_matches(password, api_key)) if api_key else None
        app = gr.mount_gradio_app(app, build_ui(state), path="/", auth=auth, ssr_mode=False,
                                  footer_links=[], show_error=True)
    return app
