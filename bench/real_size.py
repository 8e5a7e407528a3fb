"""Real-size check (issue 12; not in CI): serve a repository exported from the real architectures
(`make real-snapshots real-export`) in the embedded Triton and paint one image from Japanese text
through the `sotai` ensemble. Prints load time, painting time, the tags and Triton's RSS.

    .venv/bin/python bench/real_size.py models/real-export/animagine/repository --size 1024 --steps 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def rss_gib(pid: int) -> float:
    """RSS of a process and its children (Triton's Python stubs), GiB."""
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**30


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("repository", type=Path)
    parser.add_argument("--text", default="銀髪の少女が夜の桜の下で微笑んでいる")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("out/real-size.png"))
    args = parser.parse_args()

    from sotai.client import GenerateRequest, SotaiClient
    from sotai.diffusion.png import decode_png
    from sotai.params import GenerationParams
    from sotai.serving.server import TritonServer, free_port

    started = time.monotonic()
    server = TritonServer(args.repository.resolve(), http_port=free_port(), grpc_port=free_port(),
                          metrics_port=free_port(), log_file=args.out.parent / "real-size-triton.log")
    server.start(timeout_s=1800)
    print(f"triton ready: {time.monotonic() - started:.0f} s, RSS {rss_gib(server.process.pid):.1f} GiB", flush=True)
    try:
        params = GenerationParams(steps=args.steps, width=args.size, height=args.size, seed=1)
        with SotaiClient(server.grpc_url, timeout_s=3600) as client:
            t = time.monotonic()
            result = client.generate(GenerateRequest(args.text, params))
            elapsed = time.monotonic() - t
        pixels = decode_png(result.images[0])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(result.images[0])
        print(f"route {result.route}: {elapsed:.0f} s for {args.steps} step(s) at {args.size}x{args.size}; "
              f"image {pixels.shape}, pixel mean {pixels.mean():.1f}, std {pixels.std():.1f}")
        print(f"tags: {', '.join(t['tag'] for t in result.tags)}")
        print(f"prompt: {result.prompt}")
        print(f"triton RSS after: {rss_gib(server.process.pid):.1f} GiB; wrote {args.out}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
