"""The tiny stand-in is laid out like p1atdev/dart-v2-moe-sft and is reproducible."""

import json

from sotai.dart import build_tiny_dart
from sotai.dart.tiny import SNAPSHOT_FILES
from sotai.dart.vocab import SPECIAL_TOKENS

from .conftest import TINY_TAGS


def test_snapshot_has_the_hub_files(tiny_snapshot):
    for name in SNAPSHOT_FILES:
        assert (tiny_snapshot / name).is_file(), name
    config = json.loads((tiny_snapshot / "config.json").read_text())
    assert config["architectures"] == ["MixtralForCausalLM"]
    assert config["num_key_value_heads"] == 1
    assert (config["num_local_experts"], config["num_experts_per_tok"]) == (4, 2)
    assert config["vocab_size"] == len(SPECIAL_TOKENS) + len(TINY_TAGS)


def test_special_token_ids_follow_dart_v2(tiny_snapshot):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_snapshot)
    assert (tok.bos_token, tok.bos_token_id) == ("<|bos|>", 0)
    assert (tok.eos_token, tok.eos_token_id) == ("<|eos|>", 1)
    assert (tok.pad_token, tok.pad_token_id) == ("<|pad|>", 2)
    for special in ("<copyright>", "</general>", "<|input_end|>", "<|rating:general|>", "<|aspect_ratio:tall|>",
                    "<|length:long|>", "<|identity:none|>"):
        assert tok.convert_tokens_to_ids(special) != tok.unk_token_id, special


def test_one_token_per_tag_in_dart_spelling(tiny_snapshot):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_snapshot)
    ids = tok("1girl, long hair, ^_^, hatsune miku", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(ids) == ["1girl", "long hair", "^_^", "hatsune miku"]


def test_same_tags_give_the_same_files(tiny_snapshot, tmp_path):
    again = build_tiny_dart(tmp_path / "again", TINY_TAGS)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_snapshot / name).read_bytes(), name
