"""The `animagine` path: a snapshot laid out like the hub's, tokenizer files from it, no remote code."""

import json
import shutil

from sotai.dart import TagCompleter, export_dart_onnx


def test_hub_layout_with_a_remote_code_tokenizer_exports_and_serves_without_running_it(tiny_snapshot, tmp_path):
    hub = tmp_path / "dart-v2-moe-sft"
    shutil.copytree(tiny_snapshot, hub)
    config = json.loads((hub / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="DartTokenizer", auto_map={"AutoTokenizer": ["tokenization_dart.DartTokenizer", None]})
    (hub / "tokenizer_config.json").write_text(json.dumps(config))
    (hub / "tokenization_dart.py").write_text("raise SystemExit('remote code must never run')\n")

    model = export_dart_onnx(hub, tmp_path / "onnx")

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        assert (model.parent / name).read_bytes() == (hub / name).read_bytes(), name
    result = TagCompleter(model.parent, ["CPUExecutionProvider"]).complete(
        [{"tag": "1girl"}], width=1024, height=1024, rating="general")
    assert result.prompt.startswith("1girl")
