"""`sotai bench dart [--json]`: Dart's decoding speed, ONNX Runtime vs PyTorch eager, on this machine.

The model is dart-v2-moe-sft's architecture with random weights (no download): 165.7M
parameters, top-2 of 4 experts, one KV head. Built artifacts are cached under
`<models_dir>/bench/dart/` so a rerun only measures.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sotai.dart.vocab import SPECIAL_TOKENS

# p1atdev/dart-v2-moe-sft's config.json
BENCH_CONFIG = dict(
    vocab_size=30649, hidden_size=768, intermediate_size=3072, num_hidden_layers=4, num_attention_heads=8,
    num_key_value_heads=1, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=1024,
    rope_theta=1000.0, rms_norm_eps=1e-5, sliding_window=None, tie_word_embeddings=False, hidden_act="silu",
)
BENCH_SEED = 0
NEW_TAGS = 128
BATCHES = (1, 8)
PROMPT_TAGS = 12  # a typical RAG hand-off: a dozen general tags
QUANT_BITS = (8, 4)
SERVED_BITS = 8


@dataclass(frozen=True)
class BenchModels:
    snapshot: Path
    fp32: Path  # exported directory (model.onnx + tokenizer), as optimum wrote it: the reference
    quantized: dict[int, Path]  # bits -> exported directory, attention fused (the CPU serving graph)


def build_bench_models(root: Path, snapshot: Path | None = None) -> BenchModels:
    """Build (once) the random-weight snapshot, its ONNX export and the quantized graphs.

    snapshot: an existing Dart snapshot to export instead (`sotai snapshot write p1atdev/dart-v2-moe-sft`,
    the real config and tokenizer format: the real-size check); its artifacts go under root/<its name>.
    """
    from tqdm import tqdm

    from sotai.dart.export import export_dart_onnx
    from sotai.dart.fuse import fuse_dart_onnx
    from sotai.dart.quantize import quantize_dart_onnx

    given = snapshot is not None
    if given:
        snapshot = Path(snapshot).resolve()
        weights = snapshot / "model.safetensors"
        if not weights.is_file():
            from sotai.errors import MissingArtifact

            raise MissingArtifact("Dart snapshot", weights, "make real-snapshots")
        root = root / ("snapshot-" + snapshot.name)
        source = {"snapshot": str(snapshot), "size": weights.stat().st_size, "mtime": weights.stat().st_mtime}
    else:
        snapshot, source = root / "snapshot", {"config": BENCH_CONFIG, "seed": BENCH_SEED}
    key = json.dumps({**source, "bits": QUANT_BITS, "v": 5}, sort_keys=True)
    fp32 = root / "onnx-fp32"
    quantized = {bits: root / f"onnx-int{bits}" for bits in QUANT_BITS}
    stamp = root / "stamp.json"
    if stamp.is_file() and stamp.read_text() == key:
        return BenchModels(snapshot, fp32, quantized)
    steps = tqdm(total=3 + len(QUANT_BITS), desc="bench dart: build", unit="step")
    if not given:
        _build_snapshot(snapshot)
    steps.update()
    export_dart_onnx(snapshot, fp32)
    steps.update()
    fused = fuse_dart_onnx(fp32 / "model.onnx", fp32 / "model_fused.onnx")  # as export_dart_onnx(quantize_bits=...) does
    steps.update()
    for bits, out in quantized.items():
        quantize_dart_onnx(fused, out / "model.onnx", bits=bits)
        steps.update()
    fused.unlink()
    steps.close()
    stamp.write_text(key)
    return BenchModels(snapshot, fp32, quantized)


def _build_snapshot(out: Path) -> None:
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM

    from sotai.dart.tiny import build_dart_tokenizer

    vocab = list(SPECIAL_TOKENS) + [f"tag {i}" for i in range(BENCH_CONFIG["vocab_size"] - len(SPECIAL_TOKENS))]
    config = MixtralConfig(bos_token_id=0, eos_token_id=1, pad_token_id=2, **BENCH_CONFIG)
    config.architectures = ["MixtralForCausalLM"]
    torch.manual_seed(BENCH_SEED)
    model = MixtralForCausalLM(config).eval()
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / 1e6 - 165.7) < 0.1, f"bench model has {n / 1e6:.1f}M parameters, dart-v2-moe-sft has 165.7M"
    model.save_pretrained(out, safe_serialization=True)
    build_dart_tokenizer(vocab).save_pretrained(out)


def _candidates(vocab: dict[str, int]) -> list[dict]:
    """PROMPT_TAGS general tags the tokenizer names: the bench model's `tag i`, or for a real-format
    snapshot (tags named from the tag list) its first named tags. Tags a tokenizer lacks would be
    dropped silently and shorten the prompt, so the names come from the vocabulary itself."""
    names = [f"tag {i}" for i in range(PROMPT_TAGS)]
    if not all(n in vocab for n in names):
        named = sorted((i, t) for t, i in vocab.items() if not (t.startswith("<") and t.endswith(">")))
        names = [t for _, t in named[:PROMPT_TAGS]]
    if len(names) < PROMPT_TAGS:
        raise ValueError(f"the Dart tokenizer names {len(names)} tags; the bench prompt needs {PROMPT_TAGS}")
    return [{"tag": n, "category": "general"} for n in names]


def time_onnx(model_dir: Path, batch: int, repeats: int) -> float:
    """Median seconds for `batch` requests of NEW_TAGS new tags each, one batched TagCompleter call."""
    from sotai.dart import DartRequest, DartSampling, TagCompleter

    completer = TagCompleter(model_dir, ["CPUExecutionProvider"])
    sampling = DartSampling(seed=1, min_new_tokens=NEW_TAGS, max_new_tokens=NEW_TAGS)
    requests = [DartRequest(_candidates(completer.vocab), 1024, 1024, "general", sampling) for _ in range(batch)]
    completer.complete_batch(requests[:1])  # warm-up (allocations, thread pool)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        results = completer.complete_batch(requests)
        times.append(time.perf_counter() - t)
        added = [sum(1 for tag in r.tags if tag["reason"].get("signal") == "dart") for r in results]
        assert added == [NEW_TAGS] * batch, f"expected {NEW_TAGS} new tags per row, got {added}"
    return float(np.median(times))


def time_torch(snapshot: Path, prompt_ids: list[int], batch: int, repeats: int) -> float:
    """Median seconds for transformers' `generate` (eager, sampling with the model-card defaults)."""
    import torch
    from transformers import MixtralForCausalLM

    model = MixtralForCausalLM.from_pretrained(snapshot).eval()
    ids = torch.tensor([prompt_ids] * batch)
    kw = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=100, pad_token_id=2, attention_mask=torch.ones_like(ids))
    with torch.inference_mode():
        model.generate(ids, min_new_tokens=4, max_new_tokens=4, **kw)  # warm-up
        times = []
        for _ in range(repeats):
            torch.manual_seed(1)
            t = time.perf_counter()
            out = model.generate(ids, min_new_tokens=NEW_TAGS, max_new_tokens=NEW_TAGS, **kw)
            times.append(time.perf_counter() - t)
            assert out.shape[1] - ids.shape[1] == NEW_TAGS
    return float(np.median(times))


def greedy_agreement(reference: Path, candidate: Path, prompt_ids: list[int], steps: int = NEW_TAGS) -> dict:
    """Share of positions where `candidate` picks the same top-1 tag as `reference` along the
    reference's own greedy continuation (teacher forced, so one early flip costs one position),
    with what explains it: the reference's median top-1/top-2 logit margin and the candidate's
    median absolute logit error (random weights give near-flat logits: tiny margins)."""
    from sotai.dart.session import OnnxDecoder

    ref = OnnxDecoder(reference / "model.onnx", ["CPUExecutionProvider"])
    cand = OnnxDecoder(candidate / "model.onnx", ["CPUExecutionProvider"])
    new = ref.generate([prompt_ids], lambda _b, logits: (int(np.argmax(logits)), 1.0), pad_id=2, end_ids=set(), max_new_tokens=steps)[0]
    sequence = np.array([prompt_ids + [t for t, _ in new]])
    mask = np.ones_like(sequence)
    start = len(prompt_ids) - 1
    la = ref.logits(sequence, mask)[0, start:-1]
    lb = cand.logits(sequence, mask)[0, start:-1]
    top2 = np.sort(la, axis=-1)[:, -2:]
    return {
        "agreement": round(float((la.argmax(-1) == lb.argmax(-1)).mean()), 4),
        "fp32_margin_median": round(float(np.median(top2[:, 1] - top2[:, 0])), 5),
        "logit_error_median": round(float(np.median(np.abs(la - lb))), 5),
    }


def prompt_ids_for(model_dir: Path) -> list[int]:
    from sotai.dart import TagCompleter
    from sotai.dart.completer import DartRequest

    completer = TagCompleter(model_dir, ["CPUExecutionProvider"])
    return completer._prepare(DartRequest(_candidates(completer.vocab), 1024, 1024, "general")).prompt_ids


def run(models_dir: Path, *, repeats: int = 3, torch_repeats: int = 1, snapshot: Path | None = None) -> dict:
    import onnxruntime as ort
    import torch

    models = build_bench_models(models_dir / "bench" / "dart", snapshot)
    prompt = prompt_ids_for(models.fp32)
    # The headline graph is what the animagine CPU export serves (ExportPlan.dart_quantize_bits: int8,
    # chosen from this bench's agreement figures); the others are timed and compared below.
    fast_bits = SERVED_BITS if SERVED_BITS in models.quantized else min(models.quantized)
    result: dict = {
        "model": "dart-v2-moe-sft architecture, random weights (165.7M parameters)"
                 + (f", snapshot {snapshot}" if snapshot is not None else ""),
        "new_tags": NEW_TAGS, "prompt_tokens": len(prompt), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "onnxruntime": ort.__version__, "torch": torch.__version__,
        "onnx_weights": f"int{fast_bits} (MatMulNBits, block 32)",
    }
    for batch in BATCHES:
        onnx_s = time_onnx(models.quantized[fast_bits], batch, repeats)
        torch_s = time_torch(models.snapshot, prompt, batch, torch_repeats)
        result[f"onnx_b{batch}_latency_s"] = round(onnx_s, 4)
        result[f"torch_b{batch}_latency_s"] = round(torch_s, 4)
        result[f"onnx_b{batch}_tags_per_s"] = round(batch * NEW_TAGS / onnx_s, 1)
        result[f"torch_b{batch}_tags_per_s"] = round(batch * NEW_TAGS / torch_s, 1)
        result[f"speedup_b{batch}"] = round(torch_s / onnx_s, 2)
    for bits, path in sorted(models.quantized.items()):
        if bits != fast_bits:
            s = time_onnx(path, 1, repeats)
            result[f"onnx_int{bits}_b1_latency_s"] = round(s, 4)
    result["onnx_fp32_b1_latency_s"] = round(time_onnx(models.fp32, 1, 1), 4)
    for bits, path in sorted(models.quantized.items()):
        stats = greedy_agreement(models.fp32, path, prompt)
        result[f"greedy_top1_agreement_int{bits}_vs_fp32"] = stats["agreement"]
        result[f"int{bits}_logit_error_median"] = stats["logit_error_median"]
        result["fp32_top1_margin_median"] = stats["fp32_margin_median"]
    return result


def print_report(r: dict) -> None:
    print(f"Dart bench: {r['model']}, {r['new_tags']} new tags after a {r['prompt_tokens']}-token prompt")
    print(f"  onnxruntime {r['onnxruntime']} ({r['onnx_weights']}), torch {r['torch']} eager "
          f"({r['torch_threads']} threads, {r['cpu_count']} CPUs)")
    print(f"  {'':10}{'ONNX latency':>14}{'ONNX tags/s':>13}{'torch latency':>15}{'torch tags/s':>14}{'speed-up':>10}")
    for b in BATCHES:
        print(f"  batch {b:<4}{r[f'onnx_b{b}_latency_s']:>12.3f} s{r[f'onnx_b{b}_tags_per_s']:>13.1f}"
              f"{r[f'torch_b{b}_latency_s']:>13.3f} s{r[f'torch_b{b}_tags_per_s']:>14.1f}{r[f'speedup_b{b}']:>9.2f}x")
    others = {k: v for k, v in r.items() if k.startswith("onnx_int") or k.startswith("onnx_fp32")}
    for k, v in others.items():
        print(f"  {k}: {v} s")
    for k, v in r.items():
        if k.startswith("greedy_top1_agreement"):
            print(f"  {k}: {v:.1%}")
    print(f"  fp32 median top-1/top-2 logit margin {r['fp32_top1_margin_median']}; median |logit error| "
          + ", ".join(f"int{b} {r[f'int{b}_logit_error_median']}" for b in sorted(QUANT_BITS)))


def register(subparsers) -> None:
    p = subparsers.add_parser("dart")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the numbers")
    p.add_argument("--repeats", type=int, default=3, help="ONNX timing runs per case (median)")
    p.add_argument("--snapshot", type=Path, default=None,
                   help="a Dart snapshot to measure (e.g. models/real/p1atdev/dart-v2-moe-sft); default: one built "
                        "from the real config")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from sotai.settings import get_settings

    result = run(get_settings().models_dir, repeats=args.repeats, snapshot=args.snapshot)
    print_report(result)
    if args.json:
        print(json.dumps(result))
    return 0
