"""The `sotai` command."""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from pathlib import Path

from sotai.errors import SotaiError
from sotai.limits import SIZE_PRESETS
from sotai.params import GenerationParams, add_cli_flags, params_from_cli
from sotai.settings import get_settings

DEMO_TEXT = "銀髪の少女が夜の桜の下で微笑んでいる"

# Sub-commands that live in stage packages, declared as data: name -> (module, help). The module is
# imported only when its sub-command is chosen; its `register(subparsers)` then adds the full parser.
# Otherwise only the name and this help are listed, so `sotai --help` imports no torch.
TOP_COMMANDS = {
    "data": ("sotai.rag.commands", "tag data"),
    "index": ("sotai.rag.commands", "tag index"),
    "gateway": ("sotai.gateway.commands", "HTTP API, A1111-compatible API and web page in front of Triton"),
    "snapshot": ("sotai.export.commands", "real-architecture snapshots with random weights"),
}
# `sotai bench STAGE`: the benchmarks (sotai.bench, which the runtime core never imports).
BENCH_COMMANDS = {
    "rag": ("sotai.bench.rag", "RAG: index build time, query p50/p95 with and without embedding"),
    "dart": ("sotai.bench.dart", "Dart decoding speed: ONNX Runtime vs PyTorch eager (random weights)"),
    "diffusion": ("sotai.bench.diffusion", "UNet step ONNX vs PyTorch; Triton vs in-process end to end"),
    "triton": ("sotai.bench.triton", "perf_analyzer: the sotai ensemble and each stage at concurrency 1..8"),
    "load": ("sotai.bench.load", "sustained load (perf_analyzer on the ensemble, locust on the gateway): "
                                 "errors and RSS growth"),
    "overload": ("sotai.bench.overload", "concurrency 64 against low queue limits: answers or fast refusals, "
                                         "no 5xx, RSS back"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SotaiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `sotai` parser for `argv`: only the chosen stage sub-command's module is imported (None: all)."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="sotai", description="Japanese text -> Danbooru tags -> anime image")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("export", help="build a Triton model repository for a profile")
    p.add_argument("--profile", choices=["tiny", "animagine"], default=settings.profile)
    p.add_argument("--target", choices=["cpu", "gpu", "tensorrt"], default="cpu")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="run the embedded Triton server in the foreground (127.0.0.1)")
    p.add_argument("--repo", type=Path, default=None, help="model repository (default: the profile's)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--host", default=settings.host)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("generate", help="text -> tags -> image through a running server")
    p.add_argument("text")
    p.add_argument("-o", "--output", type=Path, default=Path("out.png"))
    _add_generation_args(p, settings)
    _add_connection_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("tags", help="text -> tags (RAG, selection, then Dart)")
    p.add_argument("text", nargs="?")
    p.add_argument("--input", type=Path, help='JSON lines, one {"text": ...} object per line (a line that is not '
                                              'JSON is one text); prints one JSON object per line')
    p.add_argument("--stage", choices=["rag", "select", "all"], default="all",
                   help="rag: the ranked candidates; select: the tags the text supports, in prompt order "
                        "(what Dart completes); all: RAG, selection and Dart")
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.add_argument("--local", action="store_true", help="run in-process (no server)")
    _add_connection_args(p)
    p.set_defaults(func=cmd_tags)

    p = sub.add_parser("demo", help="export the tiny profile if needed, serve it, paint the demo sentence")
    p.add_argument("text", nargs="?", default=DEMO_TEXT)
    p.add_argument("-o", "--output", type=Path, default=Path("out/demo.png"))
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help="benchmarks that print numbers (--json: last line is JSON)")
    bench_sub = bench.add_subparsers(metavar="STAGE")
    chosen = _positionals(argv)
    _add_declared(sub, TOP_COMMANDS, chosen[0] if chosen else None, everything=argv is None)
    _add_declared(bench_sub, BENCH_COMMANDS, chosen[1] if chosen[:1] == ["bench"] and len(chosen) > 1 else None,
                  everything=argv is None)
    return parser


def _positionals(argv: list[str] | None) -> list[str]:
    """The leading sub-command names in argv (the top level and `bench` take no options but --help)."""
    names = []
    for arg in argv or []:
        if arg.startswith("-"):
            continue
        names.append(arg)
        if len(names) == 2:
            break
    return names


def _add_declared(subparsers, table: dict[str, tuple[str, str]], chosen: str | None, everything: bool) -> None:
    """Each declared sub-command: the full parser from its module when chosen, else its name and help."""
    chosen_module = table[chosen][0] if chosen in table else None
    registered: set[str] = set()
    for name, (module_name, help_text) in table.items():
        if everything or module_name == chosen_module:
            if module_name not in registered:  # one module may add several sub-commands
                registered.add(module_name)
                importlib.import_module(module_name).register(_DeclaredHelp(subparsers, table))
        else:
            subparsers.add_parser(name, help=help_text)  # listed only: chosen, it is built in full


class _DeclaredHelp:
    """The subparsers a stage module registers into: each sub-command's help is the table's."""

    def __init__(self, subparsers, table: dict[str, tuple[str, str]]):
        self._subparsers, self._table = subparsers, table

    def add_parser(self, name: str, **kwargs):
        kwargs.setdefault("help", self._table[name][1])
        return self._subparsers.add_parser(name, **kwargs)


def _add_connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None,
                   help="Triton address (default: SOTAI_TRITON_URL for gRPC, SOTAI_TRITON_HTTP_URL for HTTP)")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")


def triton_url(args) -> str:
    settings = get_settings()
    return args.url or (settings.triton_http_url if args.protocol == "http" else settings.triton_url)


def _add_generation_args(p: argparse.ArgumentParser, settings) -> None:
    add_cli_flags(p, settings)  # one flag per parameter declared in sotai.params
    p.add_argument("--size", choices=sorted(SIZE_PRESETS), help="an Animagine resolution preset (sets width and height)")


def params_from_args(args) -> GenerationParams:
    size = dict(zip(("width", "height"), SIZE_PRESETS[args.size])) if args.size else {}
    return params_from_cli(args, **size).checked()


def cmd_export(args) -> int:
    from sotai.export.build import ExportPlan, export_profile

    repo = export_profile(ExportPlan.from_settings(get_settings(), args.profile, args.target))
    print(f"repository ready: {repo}")
    return 0


def cmd_serve(args) -> int:
    from sotai.serving.server import TritonServer

    repo = args.repo or get_settings().repository_dir()
    server = TritonServer(repo, http_port=args.http_port, grpc_port=args.grpc_port,
                          metrics_port=args.metrics_port, host=args.host)
    # SIGTERM (docker stop, systemd) behaves like Ctrl-C: unload models, stop stubs, exit 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with server:
        print(f"Triton serving {repo}: gRPC {server.grpc_url}, HTTP {server.http_url}. Ctrl-C to stop.")
        try:
            server.process.wait()
        except KeyboardInterrupt:
            print("stopping Triton ...")
    return 0 if server.process.returncode in (0, -signal.SIGINT) else 1


def cmd_generate(args) -> int:
    from sotai.client import GenerateRequest, SotaiClient

    from tqdm.auto import tqdm

    request = GenerateRequest(args.text, params_from_args(args))
    # Streamed progress: RAG, Dart, then one event per denoising step (gRPC + diffusion_stream).
    with SotaiClient(triton_url(args), protocol=args.protocol) as client, \
            tqdm(total=100, desc="generate", unit="%", bar_format="{l_bar}{bar}| {postfix}") as bar:
        def on_progress(event) -> None:
            bar.n = round(100 * event.fraction)
            bar.set_postfix_str(f"{event.stage} {event.step}/{event.total}")

        result = client.generate(request, on_progress=on_progress)
        bar.n = 100
        bar.set_postfix_str("done")
    print_tags(result.tags, result.prompt)
    for path in write_images(result.images, args.output):
        print(f"wrote {path}")
    print(f"seed: {result.seed}")
    return 0


def cmd_tags(args) -> int:
    texts = _texts(args)
    if args.local:
        if args.stage == "all":
            raise SotaiError("--local runs the RAG stage and the selection only: add `--stage rag` or "
                             "`--stage select`, or drop --local to use the server")
        from sotai.rag.commands import retrieve_json, select_json

        run = retrieve_json if args.stage == "rag" else select_json
        for result in run(texts, args.top_k, get_settings()):
            if args.json or args.input is not None:
                print(json.dumps(result, ensure_ascii=False))
            else:
                print_tags(result.get("tags", result.get("candidates")), "")
        return 0
    from sotai.client import SotaiClient

    with SotaiClient(triton_url(args), protocol=args.protocol) as client:
        for text in texts:
            if args.stage == "rag":
                out = {"candidates": client.candidates(text, args.top_k)}
            elif args.stage == "select":
                from sotai.rag.commands import selected_from_server

                out = {"tags": selected_from_server(client, text, args.top_k)}
            else:
                result = client.tags(text, top_k=args.top_k)
                out = {"tags": result.tags, "prompt": result.prompt}
            if args.json:
                print(json.dumps(out, ensure_ascii=False))
            else:
                print_tags(out.get("tags", out.get("candidates")), out.get("prompt", ""))
    return 0


def _texts(args) -> list[str]:
    if args.input is not None:
        from sotai.rag.commands import texts_from_lines

        return texts_from_lines(args.input.read_text(encoding="utf-8"), str(args.input))
    if not args.text:
        raise SotaiError("give a TEXT or --input FILE")
    return [args.text]


def print_tags(tags: list[dict], prompt: str) -> None:
    """Tags with the reason each was chosen; Dart's additions summed up in one line (the prompt has them)."""
    added = [t for t in tags if (t.get("reason") or {}).get("signal") == "dart"]
    for t in tags:
        reason = t.get("reason") or {}
        if reason.get("signal") == "dart":
            continue
        why = f"{reason.get('signal', '')}: {reason.get('span', '')}" if reason else ""
        print(f"  {t['tag']:<32} {t.get('category', ''):<10} {t.get('score', 0):6.3f}  {why}")
    if added:
        print(f"  + {len(added)} tags added by Dart")
    if prompt:
        print(f"prompt: {prompt}")


def write_images(images: list[bytes], output: Path) -> list[Path]:
    output.parent.mkdir(parents=True, exist_ok=True)
    paths = [output] if len(images) == 1 else [
        output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(len(images))]
    for path, png in zip(paths, images):
        path.write_bytes(png)
    return paths


def cmd_demo(args) -> int:
    from sotai.client import GenerateRequest, SotaiClient
    from sotai.export.build import ExportPlan, export_profile
    from sotai.serving.server import TritonServer, free_port

    settings = get_settings()
    repo = export_profile(ExportPlan.from_settings(settings, "tiny"))
    log = settings.profile_dir("tiny") / "triton-demo.log"
    server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          log_file=log)
    print(f"starting Triton on 127.0.0.1 (log: {log}) ...")
    with server, SotaiClient(server.grpc_url) as client:
        params = GenerationParams.from_settings(settings, steps=args.steps, seed=args.seed)
        print(f"text: {args.text}")
        result = client.generate(GenerateRequest(args.text, params))
    print_tags(result.tags, result.prompt)
    for path in write_images(result.images, args.output):
        print(f"wrote {path} ({params.width}x{params.height}, seed {result.seed})")
    print("note: the tiny profile paints with random stand-in weights, so the picture is noise. "
          "For real images run `make export PROFILE=animagine` on a GPU host, then `docker compose up`.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
