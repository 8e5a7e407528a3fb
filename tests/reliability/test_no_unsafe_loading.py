"""Nothing loads pickles or runs a model repository's code: a test that fails when such a call appears.

The scan reads the syntax tree of every .py file we ship (comments and strings that forbid these
calls, like this module's own, are not calls and are not flagged).
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

from sotai.settings import PROJECT_ROOT

SCANNED = ("sotai", "export", "client", "gateway", "model_repository", "bench", "tests")

# fully qualified functions that deserialize arbitrary objects or run a repository's code on load
UNSAFE_FUNCTIONS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "cPickle.loads", "_pickle.load",
    "_pickle.loads", "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads", "joblib.load",
    "marshal.load", "marshal.loads", "shelve.open", "jsonpickle.decode",
    "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all",
    "pandas.read_pickle", "torch.hub.load", "torch.hub.load_state_dict_from_url",
}
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve", "jsonpickle"}
# Conventional aliases, for snippets that use them without the import in view.
CONVENTIONAL_ALIASES = {"pd": "pandas", "np": "numpy", "th": "torch"}
# keyword arguments that must never be switched on (any value but a literal False is flagged)
NEVER_TRUE = ("trust_remote_code", "allow_pickle")
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> what it names: `import torch as th` gives th -> torch, `from torch import load` load -> torch.load."""
    names = dict(CONVENTIONAL_ALIASES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    names[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _qualified(name: str, aliases: dict[str, str]) -> str:
    head, dot, rest = name.partition(".")
    return aliases.get(head, head) + dot + rest


def findings(source: str, filename: str = "<snippet>") -> list[str]:
    """Every unsafe load in `source`, as `file:line: what`."""
    out = []
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            out += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            out.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            qualified = _qualified(name, aliases)
            if qualified in UNSAFE_FUNCTIONS:
                out.append(f"{where}: {name}() ({qualified})")
            if qualified == "torch.load":
                weights_only = [k for k in node.keywords if k.arg == "weights_only"]
                if not weights_only or not (isinstance(weights_only[0].value, ast.Constant)
                                            and weights_only[0].value.value is True):
                    out.append(f"{where}: {name}() without weights_only=True")
            if qualified in ("yaml.load", "yaml.load_all"):
                loader = [k.value for k in node.keywords if k.arg == "Loader"] + node.args[1:2]
                if not loader or _dotted(loader[0]).rpartition(".")[2] not in SAFE_YAML_LOADERS:
                    out.append(f"{where}: {name}() without a safe Loader")
            for keyword in node.keywords:
                if keyword.arg in NEVER_TRUE and not _is_false(keyword.value):
                    out.append(f"{where}: {keyword.arg}={ast.unparse(keyword.value)}")
        elif isinstance(node, ast.Dict):  # kwargs built as a dict: {"trust_remote_code": True}
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value in NEVER_TRUE and not _is_false(value):
                    out.append(f"{where}: {key.value!r}: {ast.unparse(value)}")
    return out


def shipped_sources() -> list[Path]:
    files = []
    for top in SCANNED:
        files += [p for p in (PROJECT_ROOT / top).rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(files)


def test_no_unsafe_loading_in_the_tree():
    files = shipped_sources()
    assert len(files) > 50 and PROJECT_ROOT / "sotai" / "limits.py" in files
    problems = [f for path in files for f in findings(path.read_text(encoding="utf-8"), str(path.relative_to(PROJECT_ROOT)))]
    assert not problems, "unsafe loading (use safetensors / ONNX / parquet / JSON instead):\n" + "\n".join(problems)


# The scan itself must catch each of these (else the test above proves nothing).
CAUGHT = [
    "import pickle",
    "from pickle import loads",
    "import joblib",
    "import dill as d",
    "obj = pickle.load(f)",
    "model = joblib.load('m.joblib')",
    "df = pd.read_pickle('x.pkl')",
    "state = torch.load('w.pt')",
    "state = torch.load('w.pt', weights_only=False)",
    "state = torch.load('w.pt', map_location='cpu', weights_only=flag)",
    "m = AutoModel.from_pretrained(p, trust_remote_code=True)",
    "m = AutoModel.from_pretrained(p, trust_remote_code=remote)",
    "tok = AutoTokenizer.from_pretrained(p, **{'trust_remote_code': True})",
    "a = np.load('x.npy', allow_pickle=True)",
    "cfg = yaml.load(text)",
    "cfg = yaml.load(text, Loader=yaml.Loader)",
    "cfg = yaml.unsafe_load(text)",
    "d = marshal.loads(b)",
    "import torch as th\nstate = th.load('w.pt')",
    "from torch import load\nstate = load('w.pt')",
    "from torch import load as tl\nstate = tl('w.pt', weights_only=False)",
    "import yaml\ncfg = yaml.unsafe_load(text)",
    "from yaml import unsafe_load\ncfg = unsafe_load(text)",
    "import pandas\ndf = pandas.read_pickle('x.pkl')",
    "import pandas as pds\ndf = pds.read_pickle('x.pkl')",
    "import torch\nm = torch.hub.load('repo/owner', 'model')",
    "from torch import hub\nm = hub.load('repo/owner', 'model')",
]
ALLOWED = [
    "state = torch.load('w.pt', weights_only=True)",
    "m = AutoModel.from_pretrained(p, trust_remote_code=False)",
    "a = np.load('x.npy', allow_pickle=False)",
    "a = np.load('x.npy')",  # numpy's default refuses pickles
    "cfg = yaml.safe_load(text)",
    "cfg = yaml.load(text, Loader=yaml.SafeLoader)",
    "note = 'never call pickle.load or set trust_remote_code=True'  # pickle.load(f)",
    "from safetensors.torch import load_file\nw = load_file('m.safetensors')",
    "import torch as th\nstate = th.load('w.pt', weights_only=True)",
    "from json import load\ncfg = load(f)",
]


@pytest.mark.parametrize("snippet", CAUGHT)
def test_the_scan_catches(snippet):
    assert findings(snippet), snippet


@pytest.mark.parametrize("snippet", ALLOWED)
def test_the_scan_allows(snippet):
    assert findings(snippet) == [], snippet


PICKLED = ("pytorch_model.bin", "unet/diffusion_pytorch_model.bin", "model.ckpt", "model.pt", "model.pth",
           "model.pkl", "text_encoder/pytorch_model.bin", "flax_model.msgpack", "tokenizer/pytorch_model.bin",
           "tokenizer_2/weights.bin", "tokenizer/vocab.pkl", "training_args.bin", "optimizer.pt")
# What the export reads, so a pattern fix that refuses too much fails too.
NEEDED = {
    "DART": ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"),
    "ANIMAGINE": ("model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
                  "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt",
                  "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json", "tokenizer_2/vocab.json",
                  "tokenizer_2/merges.txt", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                  "vae/config.json", "vae/diffusion_pytorch_model.safetensors"),
    "VAE_FP16_FIX": ("config.json", "diffusion_pytorch_model.safetensors"),
}


@pytest.mark.parametrize("snapshot_name", list(NEEDED))
def test_model_downloads_take_no_pickled_weights(snapshot_name):
    from sotai.export import hub

    patterns = getattr(hub, snapshot_name).allow_patterns
    taken = [name for name in PICKLED if any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert not taken, f"{snapshot_name} would download pickles: {taken}"
    missing = [name for name in NEEDED[snapshot_name] if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert not missing, f"{snapshot_name} would not download {missing}"
