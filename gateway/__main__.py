"""`python -m sotai.gateway [--host --port --triton-url ...]`: the gateway alone, without the stage
commands (the gateway's container has no model libraries)."""

from __future__ import annotations

import argparse
import sys

from .commands import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sotai.gateway")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["gateway", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
