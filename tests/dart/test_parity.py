"""The ONNX graph (KV cache in and out) computes what PyTorch computes, as exported and with its
attention fused into GroupQueryAttention (the CPU serving graph)."""

import numpy as np
import pytest

from sotai.dart.session import OnnxDecoder

ATOL = 1e-3


@pytest.fixture(scope="module")
def torch_model(tiny_snapshot):
    from transformers import MixtralForCausalLM

    return MixtralForCausalLM.from_pretrained(tiny_snapshot).eval()


@pytest.fixture(scope="module", params=["exported", "fused"])
def decoder(request, tiny_onnx_dir, tiny_fused_dir):
    model_dir = tiny_onnx_dir if request.param == "exported" else tiny_fused_dir
    return OnnxDecoder(model_dir / "model.onnx", ["CPUExecutionProvider"], threads=1)


def torch_logits(model, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


PROMPT = [0, 6, 7, 8, 9, 13, 31, 37, 10, 103, 107, 110, 43, 41]  # bos ... <general> tags <|identity:none|><|input_end|>


def test_prompt_logits_match_pytorch(decoder, torch_model):
    ids = np.array([PROMPT])
    onnx = decoder.logits(ids, np.ones_like(ids))[0]
    np.testing.assert_allclose(onnx, torch_logits(torch_model, PROMPT), atol=ATOL)


def test_cached_decoding_matches_pytorch_step_by_step_and_greedy_picks_agree(decoder, torch_model):
    seen: list[np.ndarray] = []

    def greedy(_row, logits):
        seen.append(logits.copy())
        return int(np.argmax(logits)), 1.0

    new = decoder.generate([PROMPT], greedy, pad_id=2, end_ids={1, 11}, max_new_tokens=12)[0]
    tokens = [t for t, _ in new]
    # PyTorch without any cache: the whole sequence again at every step
    sequence = list(PROMPT)
    for step, onnx_logits in enumerate(seen):
        reference = torch_logits(torch_model, sequence)[-1]
        np.testing.assert_allclose(onnx_logits, reference, atol=ATOL, err_msg=f"step {step}")
        nxt = int(np.argmax(reference))
        if nxt in (1, 11):
            break
        assert nxt == tokens[step]
        sequence.append(nxt)
    assert sequence[len(PROMPT):] == tokens


def test_a_padded_row_in_a_batch_gets_the_logits_it_gets_alone(decoder):
    short, long = PROMPT[:9] + PROMPT[-2:], PROMPT
    alone: dict[int, list[np.ndarray]] = {0: [], 1: []}
    batched: dict[int, list[np.ndarray]] = {0: [], 1: []}

    def recorder(store, row_of):
        def pick(row, logits):
            store[row_of(row)].append(logits.copy())
            return int(np.argmax(logits)), 1.0
        return pick

    decoder.generate([short], recorder(alone, lambda r: 0), pad_id=2, end_ids=set(), max_new_tokens=6)
    decoder.generate([long], recorder(alone, lambda r: 1), pad_id=2, end_ids=set(), max_new_tokens=6)
    decoder.generate([short, long], recorder(batched, lambda r: r), pad_id=2, end_ids=set(), max_new_tokens=6)
    for row in (0, 1):
        assert len(batched[row]) == len(alone[row]) == 6
        for a, b in zip(alone[row], batched[row]):
            np.testing.assert_allclose(a, b, atol=1e-4)


def test_greedy_generation_equals_transformers_generate(decoder, torch_model):
    import torch

    new = decoder.generate([PROMPT], lambda _b, x: (int(np.argmax(x)), 1.0), pad_id=2, end_ids=set(), max_new_tokens=24)[0]
    with torch.no_grad():
        reference = torch_model.generate(torch.tensor([PROMPT]), do_sample=False, max_new_tokens=24, min_new_tokens=24,
                                         pad_token_id=2, eos_token_id=None, top_k=None)
    assert [t for t, _ in new] == reference[0, len(PROMPT):].tolist()
