"""Real-size check (issue 12; not in CI): every ONNX graph of an exported repository passes onnx's
checker and loads in onnxruntime. Per graph: file sizes, checker time, session load time and the
loading process's peak RSS.

The checker gets the file path, not a loaded proto: protobuf cannot hold a graph over 2 GB, and the
path form checks the external data files too. Each graph loads in its own process, one at a time,
so its peak RSS is its own and the 5 GB fp16 UNet never shares memory with another session.
The CPU execution provider is enough to prove the files load (a GPU host uses CUDA's).

    .venv/bin/python bench/check_repository.py models/real-export/animagine/repository-gpu [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _load_one(model_path: str) -> dict:
    """Runs in the child: checker, then an onnxruntime session; returns its figures."""
    import resource

    import onnx
    import onnxruntime as ort

    started = time.monotonic()
    onnx.checker.check_model(model_path, full_check=False)
    checked = time.monotonic() - started
    started = time.monotonic()
    options = ort.SessionOptions()
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    loaded = time.monotonic() - started
    return {
        "checker_s": round(checked, 1), "load_s": round(loaded, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "inputs": {i.name: i.type for i in session.get_inputs()},
        "outputs": [o.name for o in session.get_outputs()],
    }


def graphs(repository: Path) -> list[Path]:
    return sorted(repository.glob("*/1/**/model.onnx"))


def check(repository: Path) -> list[dict]:
    found = graphs(repository)
    if not found:
        raise SystemExit(f"{repository}: no */1/model.onnx (export it first: make real-export TARGET=...)")
    results = []
    for path in found:
        files = {p.name: p.stat().st_size for p in sorted(path.parent.iterdir()) if p.name.startswith("model.onnx")}
        proc = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True)
        row = {"model": str(path.relative_to(repository)), "files": files,
               "gb": round(sum(files.values()) / 1e9, 2)}
        if proc.returncode != 0:
            row["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        else:
            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        results.append(row)
        status = row.get("error") or (f"checker {row['checker_s']} s, onnxruntime load {row['load_s']} s, "
                                      f"peak RSS {row['peak_rss_gib']} GiB")
        print(f"{row['model']}: {row['gb']} GB; {status}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("repository", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_load_one(str(args.repository))))
        return 0
    results = check(args.repository)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
