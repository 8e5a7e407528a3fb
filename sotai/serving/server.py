"""Start the Triton Inference Server carried by the nvidia-pytriton wheel.

The wheel ships `tritonserver` (Triton 2.51) with the Python backend but no
ONNX Runtime or TensorRT backend, so on CPU hosts every model in our repository
is a Python-backend model. On GPU hosts the NGC image runs the same repository
(see docker-compose.yml); this module is only for the embedded server.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from sotai.errors import MissingArtifact, SotaiError

EXIT_TIMEOUT_S = 30  # Triton's own default, stated: unloading 9 Python models takes seconds
PYTHON_TAG = f"{sys.version_info.major}.{sys.version_info.minor}"


def _pytriton_dir() -> Path:
    try:
        import pytriton
    except ImportError as exc:  # pragma: no cover - part of the pinned set
        raise SotaiError("nvidia-pytriton is not installed: run `make venv`") from exc
    return Path(pytriton.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STUB_NAME = "triton_python_backend_stub"
# The folder the NGC image's Triton runs its Python backend from (docker/triton.Dockerfile links our stub here).
IMAGE_PYTHON_BACKEND = Path("/opt/tritonserver/backends/python")


def wheel_stub(python_tag: str = PYTHON_TAG) -> Path:
    """The nvidia-pytriton wheel's Python-backend stub built for Python `python_tag`."""
    stub = _pytriton_dir() / "tritonserver" / "python_backend_stubs" / python_tag / STUB_NAME
    if not stub.is_file():
        raise SotaiError(f"nvidia-pytriton has no Python backend stub for Python {python_tag}")
    return stub


def install_python_stub(python_backend_dir: Path, python_tag: str = PYTHON_TAG) -> Path:
    """Put the wheel's stub into a Triton Python-backend folder, as a symbolic link, never a copy.

    This decides the stub's environment for the embedded server and the GPU image alike. The stub
    finds its libraries (libcudart, ...) through RPATH=$ORIGIN/../../../../nvidia_pytriton.libs, and
    for an executable $ORIGIN is the folder of the file the kernel ran (/proc/self/exe, links
    resolved): through a link it is the wheel's own folder and the path resolves with no
    LD_LIBRARY_PATH; a copy elsewhere (what the image did) finds nothing and every model fails to load.
    """
    stub = wheel_stub(python_tag)
    python_backend_dir.mkdir(parents=True, exist_ok=True)
    _link(stub, python_backend_dir / STUB_NAME)
    return python_backend_dir / STUB_NAME


def prepare_backend_dir(work_dir: Path) -> Path:
    """Assemble `backends/python/` = the wheel's Python backend + the stub for our Python (links)."""
    src = _pytriton_dir() / "tritonserver"
    backends = work_dir / "backends"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in (src / "backends" / "python").iterdir():
        if item.is_file():
            _link(item, python_dir / item.name)
    install_python_stub(python_dir)
    return backends


def _link(src: Path, dst: Path) -> None:
    """dst -> src as a symbolic link (replacing a copy or a stale link left by an older checkout)."""
    if dst.is_symlink() and Path(os.readlink(dst)) == src:
        return
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    dst.symlink_to(src)


class TritonStartupError(SotaiError):
    """tritonserver did not come up; the message carries each failing model's own error."""

    def __init__(self, message: str, failures: dict[str, str] | None = None):
        self.failures = failures or {}
        super().__init__(message)


# `failed to load 'dart' version 1: Internal: MissingArtifact: Dart model file not usable at ...: run `make
# export`\n\nAt:\n  ...traceback` (Triton quotes the message; newlines are written as "\n").
_LOAD_FAILED = re.compile(r"failed to load '(?P<model>[^']+)' version \d+: (?P<message>.*?)(?:\\n|\"?$)")
_ERROR_KINDS = re.compile(r"^(?:(?:Internal|Invalid argument|Not found|Unavailable|Unknown): )?(?:[A-Z]\w*(?:Error|Artifact|Exception): )?")


def load_failures(log_lines) -> dict[str, str]:
    """{model: its error} from tritonserver's log: the first line of each model's load error."""
    failures: dict[str, str] = {}
    for line in log_lines:
        match = _LOAD_FAILED.search(line)
        if match and match.group("model") not in failures:
            failures[match.group("model")] = _ERROR_KINDS.sub("", match.group("message").strip(), count=1)
    return failures


def startup_message(returncode: int | None, log_lines, log_file: Path | None) -> TritonStartupError:
    """One message: which model failed and why (its own words name the file and the fixing command)."""
    lines = list(log_lines)
    failures = load_failures(lines)
    where = f" (full log: {log_file})" if log_file else ""
    if failures:
        body = "; ".join(f"model '{m}': {msg}" for m, msg in failures.items())
        return TritonStartupError(f"tritonserver could not load its models: {body}{where}", failures)
    # No model error (a bad config, a busy port ...): the server's own last error lines.
    errors = [ln.strip() for ln in lines if ln.startswith(("E", "error:")) and "CudaDriverHelper" not in ln]
    detail = " | ".join(errors[-3:]) or (lines[-1].strip() if lines else "no output")
    state = f"exited with code {returncode}" if returncode is not None else "was not ready"
    return TritonStartupError(f"tritonserver {state} during start-up: {detail}{where}")


class _LogTap(threading.Thread):
    """Copies tritonserver's output to the log file (or to our stdout) and keeps its tail, so a failed
    start-up can say which model failed and why instead of pointing at a log."""

    def __init__(self, stream, log_file: Path | None, keep: int = 500):
        super().__init__(name="tritonserver-log", daemon=True)
        self.stream = stream
        self.log_file = log_file
        self.tail: deque[str] = deque(maxlen=keep)

    def run(self) -> None:
        out = None
        if self.log_file:
            try:  # a log folder that does not exist yet (out/ in a fresh clone) is made
                Path(self.log_file).parent.mkdir(parents=True, exist_ok=True)
                out = open(self.log_file, "ab")
            except OSError as exc:  # the pipe is still drained, or tritonserver would block on it
                self.tail.append(f"[sotai] cannot write the Triton log {self.log_file}: {exc}\n")
        copying = True
        try:
            # Drain to the end whatever happens to the copy: a full pipe would block tritonserver.
            for line in iter(self.stream.readline, b""):
                self.tail.append(line.decode("utf-8", "replace"))
                if not copying:
                    continue
                try:
                    if out is not None:
                        out.write(line)
                        out.flush()
                    else:
                        sys.stdout.buffer.write(line)
                        sys.stdout.flush()
                except (OSError, ValueError, AttributeError):  # disk full, our stdout closed or replaced
                    copying = False
        finally:
            if out is not None:
                out.close()


@dataclass
class TritonServer:
    """`with TritonServer(repo) as server:` starts tritonserver on 127.0.0.1 and waits until ready."""

    repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "127.0.0.1"
    work_dir: Path | None = None
    log_verbose: int = 0
    log_file: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _tap: _LogTap | None = field(default=None, init=False, repr=False)

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    def command(self) -> list[str]:
        work = self.work_dir or self.repository.parent / "_triton"
        backends = prepare_backend_dir(work)
        return [
            str(_pytriton_dir() / "tritonserver" / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true", "--allow-gpu-metrics=false",
            # A model that fails to load must fail start-up loudly, with its message.
            "--exit-on-error=true", "--strict-readiness=true",
            # On SIGINT/SIGTERM Triton waits for open connections (a client's keep-alive) before it
            # exits; bound that wait so `sotai serve` stops promptly, inside `stop()`'s own limit.
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        """The stub must import this venv's packages and the `sotai` library."""
        site = _pytriton_dir().parent
        env = dict(os.environ)
        # The wheel's own libraries need no path: the stub is linked, not copied (install_python_stub).
        # It links libpython3.X.so; that must be the one of the interpreter whose extension modules
        # (lib-dynload: _ssl, ...) it will import, not another build found by the loader.
        libs = []
        own_lib = Path(sys.base_prefix) / "lib"
        if (own_lib / f"libpython{PYTHON_TAG}.so.1.0").exists():
            libs.append(str(own_lib))
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (*libs, env.get("LD_LIBRARY_PATH", "")) if p)
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        project_root = Path(__file__).resolve().parents[2]
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(project_root), str(site), env.get("PYTHONPATH", "")) if p
        )
        # The stubs share two cores with the server: one intra-op thread each avoids oversubscription.
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self, timeout_s: float = 300.0) -> "TritonServer":
        if not (self.repository / "sotai" / "config.pbtxt").is_file():
            raise MissingArtifact("Triton model repository", self.repository, "make export")
        self.process = subprocess.Popen(
            self.command(), env=self.environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._tap = _LogTap(self.process.stdout, self.log_file)
        self._tap.start()
        self.wait_ready(timeout_s)
        return self

    def _startup_error(self) -> TritonStartupError:
        if self._tap is not None:
            self._tap.join(timeout=5)  # the rest of the output, up to the exit
        tail = list(self._tap.tail) if self._tap is not None else []
        return startup_message(self.process.returncode if self.process else None, tail, self.log_file)

    def wait_ready(self, timeout_s: float) -> None:
        import tritonclient.http as httpclient

        # Closed afterwards: an open keep-alive connection makes Triton wait out its exit timeout.
        client = httpclient.InferenceServerClient(self.http_url)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise self._startup_error()
                try:
                    if client.is_server_ready():
                        return
                except Exception:  # connection refused until the HTTP endpoint is up
                    pass
                time.sleep(0.25)
        finally:
            client.close()
        self.stop()
        error = self._startup_error()
        raise TritonStartupError(f"not ready after {timeout_s:.0f} s: {error}", error.failures)

    def stop(self, timeout_s: float = EXIT_TIMEOUT_S + 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGINT lets Triton unload models and stop the stubs; the group kill is the fallback.
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> "TritonServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m sotai.serving.server install-stub [DIR]`: what docker/triton.Dockerfile runs."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sotai.serving.server")
    sub = parser.add_subparsers(dest="command", required=True)
    stub = sub.add_parser("install-stub", help="link the wheel's Python-backend stub into a Triton backend folder")
    stub.add_argument("backend_dir", nargs="?", type=Path, default=IMAGE_PYTHON_BACKEND)
    args = parser.parse_args(argv)
    target = install_python_stub(args.backend_dir)
    print(f"{target} -> {os.readlink(target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
