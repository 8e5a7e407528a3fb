"""Prompt weights in A1111's syntax: the parser against A1111's own documented answers, the token
multipliers, the "Original" weighting of both encoders' outputs, and the pixels they paint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sotai.diffusion.emphasis import BREAK, escape, item_tags, parse_attention, plain_text, split_top_level
from sotai.diffusion.png import decode_png
from sotai.diffusion.prompting import animagine_prompts, emphasize, token_chunks, weighted_chunks
from sotai.errors import InvalidInput
from sotai.params import GenerationParams

# The doctest of A1111's modules/prompt_parser.py `parse_prompt_attention`, answer for answer.
A1111_EXAMPLES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
]


@pytest.mark.parametrize("text, expected", A1111_EXAMPLES)
def test_parser_gives_a1111s_documented_answers(text, expected):
    assert parse_attention(text) == expected  # exact floats: A1111 multiplies in the same order


@pytest.mark.parametrize("text, expected", [
    ("(tag:1.3)", [("tag", 1.3)]),
    ("((tag))", [("tag", 1.1 * 1.1)]),
    ("[tag]", [("tag", 1 / 1.1)]),
    ("[[tag]]", [("tag", 1 / 1.1 / 1.1)]),
    ("(tag:-0.5)", [("tag", -0.5)]),
    ("a) b]", [("a) b]", 1.0)]),  # unopened brackets are text
    ("x:1.2) y", [("x:1.2) y", 1.0)]),  # an explicit weight with no ( open is text
    ("[tag:1.2]", [("tag:1.2", 1 / 1.1)]),  # only ( takes a number
    ("a\\\\b\\c", [("a\\bc", 1.0)]),  # \\ is a backslash, a lone \ is dropped
    ("a BREAK b", [("a", 1.0), (BREAK, -1.0), ("b", 1.0)]),
    ("aBREAKb", [("aBREAKb", 1.0)]),  # only the word
    ("(a BREAK b)", [("a", 1.1), (BREAK, -1.1), ("b", 1.1)]),  # inside brackets it is the word (A1111)
    ("", [("", 1.0)]),
])
def test_parser_rules(text, expected):
    got = parse_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_a_weight_that_is_not_a_number_is_refused_naming_the_field():
    with pytest.raises(InvalidInput, match="must be a number") as err:
        parse_attention("(tag:1.2.3)", "negative_prompt")
    assert err.value.field == "negative_prompt"


def test_items_split_at_top_level_commas_only():
    prompt = "1girl, (silver hair, red eyes:1.2), [a, b], yuuki \\(sao\\), (open, rest"
    assert split_top_level(prompt) == ["1girl", "(silver hair, red eyes:1.2)", "[a, b]", "yuuki \\(sao\\)", "(open, rest"]
    assert [(t.tag, t.weight) for t in item_tags("(silver hair, red eyes:1.2)")] == [("silver hair", 1.2), ("red eyes", 1.2)]
    assert [t.tag for t in item_tags("yuuki \\(sao\\)")] == ["yuuki (sao)"]
    assert plain_text("1girl, (silver hair:1.2) BREAK night") == "1girl, silver hair, night"
    assert parse_attention(escape("yuuki (sao) [x]")) == [("yuuki (sao) [x]", 1.0)]


def test_quality_tags_keep_a_weighted_group_whole_and_are_not_repeated():
    prompt, negative = animagine_prompts("(masterpiece:1.2), (silver hair, red eyes:1.2)", "[lowres]", rating="general",
                                         quality_tags=True, default_negative=True)
    assert prompt == "(masterpiece:1.2), (silver hair, red eyes:1.2), rating: general, best quality"
    assert negative.startswith("[lowres], nsfw, bad anatomy")  # the default `lowres` is already there


# -- token multipliers ------------------------------------------------------------------------


def test_a_prompt_without_weights_gives_the_plain_rows(generator):
    for tokenizer in generator.tokenizers:
        for text in ("1girl, silver hair", "1girl, " * 60):
            ids, multipliers = weighted_chunks(tokenizer, text)
            np.testing.assert_array_equal(ids, token_chunks(tokenizer, text))
            assert (multipliers == 1.0).all()


def test_weighted_tokens_get_their_weight_and_the_same_ids(generator):
    tokenizer = generator.tokenizers[1]
    ids, multipliers = weighted_chunks(tokenizer, "1girl, (silver hair:1.5), [night]")
    np.testing.assert_array_equal(ids, token_chunks(tokenizer, "1girl, silver hair, night"))
    n_girl = len(tokenizer("1girl, ", add_special_tokens=False).input_ids)
    n_hair = len(tokenizer("silver hair", add_special_tokens=False).input_ids)
    n_tail = len(tokenizer(", ", add_special_tokens=False).input_ids)
    n_night = len(tokenizer("night", add_special_tokens=False).input_ids)
    row = multipliers[0]
    assert row[0] == 1.0 and (row[1:1 + n_girl] == 1.0).all()  # start token, then weight 1
    assert (row[1 + n_girl:1 + n_girl + n_hair] == 1.5).all()
    night = 1 + n_girl + n_hair + n_tail
    assert row[night:night + n_night] == pytest.approx(1 / 1.1)
    assert (row[night + n_night:] == 1.0).all()  # end and padding


def test_break_starts_a_new_chunk(generator):
    tokenizer = generator.tokenizers[0]
    ids, multipliers = weighted_chunks(tokenizer, "1girl BREAK night")
    assert ids.shape == (2, tokenizer.model_max_length) == multipliers.shape
    np.testing.assert_array_equal(ids[1], token_chunks(tokenizer, "night")[0])
    with pytest.raises(InvalidInput, match="at most 3000 CLIP tokens") as err:
        weighted_chunks(tokenizer, "a BREAK " * 41, "negative_prompt")
    assert err.value.field == "negative_prompt"


def _words(tokenizer, row) -> list[str]:
    """A row's text tokens (between start and end), as the vocabulary spells them."""
    end = list(row).index(tokenizer.eos_token_id)
    return tokenizer.convert_ids_to_tokens([int(t) for t in row[1:end]])


@pytest.fixture(scope="module", params=["<|endoftext|>", "!"], ids=["tokenizer", "tokenizer_2"])
def clip_tokenizer(request, tmp_path_factory):
    """The real CLIP BPE tokenizer (49,408 tokens) as SDXL's two are, padding with its pad token."""
    from transformers import CLIPTokenizer

    from export.snapshots import clip_bpe_files, write_clip_tokenizer

    out = tmp_path_factory.mktemp("clip")
    write_clip_tokenizer(out, *clip_bpe_files(), pad_token=request.param)
    return CLIPTokenizer.from_pretrained(out)


def test_a_full_chunk_moves_back_to_its_last_comma_as_a1111(clip_tokenizer):
    # A1111's tokenize_line with its default "Prompt word wrap length limit" of 20: a chunk that fills
    # at 75 tokens ends after its last comma when that comma is at most 20 tokens back.
    tokenizer = clip_tokenizer
    assert len(tokenizer("cat dog", add_special_tokens=False).input_ids) == 2  # one token a word
    near = "cat " * 70 + ", " + "dog " * 10
    for rows in (token_chunks(tokenizer, near), weighted_chunks(tokenizer, near)[0]):
        assert [len(_words(tokenizer, r)) for r in rows] == [71, 10]
        assert _words(tokenizer, rows[0])[-1] == ",</w>" and set(_words(tokenizer, rows[1])) == {"dog</w>"}
    far = "cat " * 50 + ", " + "dog " * 40  # the comma 25 tokens back: cut at 75
    assert [len(_words(tokenizer, r)) for r in token_chunks(tokenizer, far)] == [75, 16]
    # The moved words keep their weights: 72 cats, ",", then "dog cat" at 1.5 and "dog" at 1.0 arriving full.
    ids, multipliers = weighted_chunks(tokenizer, "cat " * 72 + ", (dog cat:1.5) dog")
    assert [len(_words(tokenizer, r)) for r in ids] == [73, 3]
    assert _words(tokenizer, ids[1]) == ["dog</w>", "cat</w>", "dog</w>"]
    assert multipliers[1][1:4].tolist() == [1.5, 1.5, 1.0] and (multipliers[0] == 1.0).all()


# -- the weighting of the encoder outputs -----------------------------------------------------


def test_emphasize_scales_the_weighted_token_and_restores_the_chunk_mean():
    z = torch.randn(3, 77, 16, generator=torch.Generator().manual_seed(0)) + 0.3
    m = torch.ones(3, 77)
    m[1, 5] = 1.5
    out = emphasize(z, m)
    assert torch.equal(out[0], z[0]) and torch.equal(out[2], z[2])  # unweighted rows: bit for bit
    assert out[1].mean().item() == pytest.approx(z[1].mean().item(), rel=1e-5)
    scale = z[1].mean() / (z[1] * m[1].unsqueeze(-1)).mean()
    torch.testing.assert_close(out[1, 5], z[1, 5] * 1.5 * scale)
    torch.testing.assert_close(out[1, 6], z[1, 6] * scale)
    assert not torch.equal(out[1], z[1])


def test_both_encoders_are_weighted_pooled_is_not_and_weight_one_is_exact(generator):
    plain, plain_pooled = generator.encode_prompt("1girl, silver hair, night", "lowres", True)
    one, one_pooled = generator.encode_prompt("1girl, (silver hair:1.0), night", "(lowres:1.0)", True)
    assert torch.equal(plain, one) and torch.equal(plain_pooled, one_pooled)

    heavy, heavy_pooled = generator.encode_prompt("1girl, (silver hair:1.5), night", "lowres", True)
    assert torch.equal(heavy_pooled, plain_pooled)  # the pooled embedding is the encoder's own
    assert torch.equal(heavy[0], plain[0])  # the negative had no weights
    d1 = generator.manifest.io["text_encoder"]["outputs"][generator.manifest.text_encoder_hidden][1][-1]
    for part in (slice(0, d1), slice(d1, None)):  # text_encoder, then text_encoder_2
        a, b = plain[1, :, part].float(), heavy[1, :, part].float()
        assert not torch.equal(a, b)
        assert b.mean().item() == pytest.approx(a.mean().item(), rel=1e-4, abs=1e-6)


# -- pixels -----------------------------------------------------------------------------------

PIXELS = GenerationParams(steps=2, width=512, height=512, seed=11, quality_tags=False, default_negative=False)


def test_weight_one_paints_the_plain_prompts_pixels_and_another_weight_does_not(generator):
    def pixels(prompt):
        return decode_png(generator(prompt, PIXELS).pngs[0]).astype(int)

    plain = pixels("1girl, silver hair")
    np.testing.assert_array_equal(pixels("1girl, (silver hair:1.0)"), plain)
    # Measured on the tiny model: 0.24 (a quarter of the values moved); an added tag moves 1.1.
    assert np.abs(pixels("1girl, (silver hair:1.5)") - plain).mean() > 0.1


def test_a_prompt_sent_as_is_reports_its_tags_plain_with_their_weights():
    from client.plans import prompt_tags

    tags = prompt_tags("1girl, (silver hair, red eyes:1.2), yuuki \\(sao\\)")
    assert [(t["tag"], t.get("weight", 1.0)) for t in tags] == [
        ("1girl", 1.0), ("silver hair", 1.2), ("red eyes", 1.2), ("yuuki (sao)", 1.0)]


@pytest.mark.parametrize("default_negative", [True, False])
def test_the_generator_refuses_a_bad_weight_naming_the_field(generator, default_negative):
    p = GenerationParams(**{**PIXELS.__dict__, "negative_prompt": "(lowres:1..2)", "default_negative": default_negative})
    with pytest.raises(InvalidInput, match="must be a number") as err:
        generator("1girl", p)
    assert err.value.field == "negative_prompt"
