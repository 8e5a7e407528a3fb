"""Sample a process tree's memory every few seconds (issue 12's real-size figures).

RSS alone overstates what a job needs when it memory-maps weight files: those resident pages are
page cache the kernel can drop. This logs RssAnon (the memory really held) and RssFile separately,
and at exit the peaks of each, so a figure can say which one it is.

    .venv/bin/python bench/rss_sampler.py --log rss.tsv -- <command ...>
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def _status(pid: int) -> dict[str, int]:
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0])  # kB
    except OSError:
        pass
    return fields


def tree_kib(pid: int) -> dict[str, int]:
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    total: dict[str, int] = {}
    for proc in procs:
        for key, value in _status(proc.pid).items():
            total[key] = total.get(key, 0) + value
    return total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("command: nothing to run (put it after --)")
    started = time.monotonic()
    child = subprocess.Popen(command)
    peaks = {"RssAnon": 0, "RssFile": 0, "total": 0}
    with open(args.log, "w") as log:
        log.write("seconds\tanon_gib\tfile_gib\n")
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            kib = tree_kib(child.pid)
            anon, file = kib.get("RssAnon", 0), kib.get("RssFile", 0) + kib.get("RssShmem", 0)
            peaks = {"RssAnon": max(peaks["RssAnon"], anon), "RssFile": max(peaks["RssFile"], file),
                     "total": max(peaks["total"], anon + file)}
            log.write(f"{time.monotonic() - started:.0f}\t{anon / 2**20:.2f}\t{file / 2**20:.2f}\n")
            log.flush()
            time.sleep(args.every)
    # ru_maxrss: the command's own peak (kernel-tracked, not sampled; file-backed pages included).
    print(f"[rss] {time.monotonic() - started:.0f} s; peak RSS of the command {usage.ru_maxrss / 2**20:.1f} GiB; "
          f"sampled peaks of its process tree: anonymous {peaks['RssAnon'] / 2**20:.1f} GiB, file-backed "
          f"{peaks['RssFile'] / 2**20:.1f} GiB, together {peaks['total'] / 2**20:.1f} GiB (every {args.every:g} s)",
          file=sys.stderr)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
