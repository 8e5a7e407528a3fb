"""`sotai gateway`: serve the HTTP gateway and web page (uvicorn) in front of a running Triton."""

from __future__ import annotations

from sotai.settings import get_settings


def register(subparsers) -> None:
    settings = get_settings()
    p = subparsers.add_parser("gateway")
    p.add_argument("--host", default=settings.host, help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=settings.gateway_port)
    p.add_argument("--triton-url", default=settings.triton_url,
                   help="Triton gRPC endpoint; several, comma-separated, are used round-robin")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc",
                   help="how the gateway talks to Triton (http: give the HTTP port; no step progress)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin (repeatable); default: no CORS")
    p.add_argument("--no-ui", action="store_true", help="serve the API only, no web page at /")
    p.set_defaults(func=cmd_gateway)


def cmd_gateway(args) -> int:
    import uvicorn

    from .app import create_app

    app = create_app(get_settings(), triton_urls=args.triton_url, protocol=args.protocol,
                     cors_origins=args.cors_origin, ui=not args.no_ui)
    print(f"gateway on http://{args.host}:{args.port}/ (API docs: /docs) -> Triton {args.triton_url}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
