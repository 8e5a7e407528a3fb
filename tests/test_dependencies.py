"""Every third-party package the project imports is declared in pyproject.toml (dependencies or an
extra), not only pinned in requirements.lock."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from sotai.settings import PROJECT_ROOT

SOURCES = ("sotai", "export", "client", "gateway", "model_repository")
# Imported, but installed by something other than pip install of this project.
PROVIDED_ELSEWHERE = {
    "triton_python_backend_utils": "Triton's Python backend, inside the server",
    "tensorrt": "the GPU image (docker/requirements-gpu.txt)",
    "tensorrt_bindings": "the GPU image (docker/requirements-gpu.txt)",
}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    return {_normalized(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in requirements}


def _imported() -> dict[str, str]:
    """Top-level import name -> the first file importing it."""
    found: dict[str, str] = {}
    for folder in SOURCES:
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    found.setdefault(module.split(".")[0], str(path.relative_to(PROJECT_ROOT)))
    return {name: where for name, where in found.items()
            if name not in sys.stdlib_module_names and name != "sotai" and name not in PROVIDED_ELSEWHERE}


def test_every_imported_package_is_declared_in_pyproject():
    declared, distributions = _declared(), packages_distributions()
    missing = []
    for name, where in sorted(_imported().items()):
        # installed: the distributions that provide it; not installed here (an optional path): its own name
        candidates = {_normalized(d) for d in distributions.get(name, [name])}
        if not candidates & declared:
            missing.append(f"{name} ({where}; distribution {', '.join(sorted(candidates))})")
    assert missing == [], f"imported but not declared in pyproject.toml: {missing}"
