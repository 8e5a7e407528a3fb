"""The bad-input corpus: one wrong request per case, with the field and the rule its error must name.

A case is sent over gRPC to the `sotai` ensemble (raw tritonclient, so dtypes and shapes can be
wrong too) and/or over HTTP to the gateway's `POST /v1/images`:

- `params`: generation fields in the gateway's JSON names, over GOOD_PARAMS; sent both ways (the
  gRPC tensors are the same fields upper-cased, typed by `sotai.contracts.SOTAI`). Both answers
  must carry the same words, `field=<value> is invalid: <rule>` from `sotai.limits`.
- `tensors`: gRPC only: raw tensors over the good ones (a value of None leaves that input out).
- `body`: HTTP only: this JSON value (bytes: sent as they are) instead of a body built from params.
- `grpc_field`/`grpc_rule`, `http_field`/`http_rule`: where one transport's words differ (Triton
  itself refuses a wrong dtype before any model runs; JSON cannot carry raw bytes; ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCENE = "銀髪の少女が夜の桜の下で微笑んでいる"
# The good request: the cheapest image the limits allow, so a case that runs RAG and Dart before
# diffusion refuses it (steps, cfg, ...) costs well under a second.
GOOD_PARAMS: dict = {"text": SCENE, "negative_prompt": "", "steps": 1, "cfg_scale": 7.0, "width": 512,
                     "height": 512, "seed": 1, "num_images": 1, "scheduler": "euler_a", "rating": "general"}
NOT_SET = object()


@dataclass(frozen=True)
class Case:
    id: str
    field: str
    rule: str
    params: dict | None = None
    tensors: dict | None = None
    body: object = NOT_SET
    path: str = "/v1/images"
    batch: int = 1  # gRPC: rows of the good request the tensors are laid over
    grpc_field: str | None = None
    grpc_rule: str | None = None
    http_field: str | None = None
    http_rule: str | None = None
    # Messages written by Triton itself (dtype, shape, missing input) are not `field=value is invalid`.
    triton_words: bool = False

    @property
    def over_grpc(self) -> bool:
        return self.params is not None or self.tensors is not None

    @property
    def over_http(self) -> bool:
        return self.params is not None or self.body is not NOT_SET

    def expected(self, transport: str) -> tuple[str, str]:
        if transport == "grpc":
            return self.grpc_field or self.field, self.grpc_rule or self.rule
        return self.http_field or self.field, self.http_rule or self.rule

    @property
    def same_words(self) -> bool:
        """Both transports must answer with the very same sentence."""
        return (self.params is not None and self.tensors is None and self.body is NOT_SET
                and not (self.grpc_field or self.grpc_rule or self.http_field or self.http_rule))


def _s(value: bytes | str) -> np.ndarray:
    return np.array([[value.encode() if isinstance(value, str) else value]], dtype=np.object_)


BOTH = [
    Case("text-empty", "text", "must not be empty or only whitespace", params={"text": ""},
         # the gateway also takes `tags` or `prompt` instead of text: it says so
         http_rule="give exactly one of text, tags, prompt (got: none)"),
    Case("text-whitespace", "text", "must not be empty or only whitespace", params={"text": " \u3000\n\t "}),
    Case("text-10000-chars", "text", "must be at most 2000 characters", params={"text": "桜" * 10_000}),
    Case("text-nul", "text", "must not contain control characters (found U+0000)", params={"text": "夜\x00桜"}),
    Case("text-escape-sequence", "text", "must not contain control characters (found U+001B)",
         params={"text": "\x1b[31m赤い\x1b[0m服の少女"}),
    Case("text-delete-char", "text", "must not contain control characters (found U+007F)", params={"text": "少女\x7f"}),
    Case("negative-prompt-too-long", "negative_prompt", "must be at most 2000 characters",
         params={"negative_prompt": "lowres, " * 300}),
    Case("negative-prompt-control", "negative_prompt", "must not contain control characters (found U+0007)",
         params={"negative_prompt": "bad\x07hands"}),
    Case("width-1000", "width", "must be a multiple of 32 in 512..2048", params={"width": 1000}),
    Case("width-1001", "width", "must be a multiple of 32 in 512..2048", params={"width": 1001}),
    Case("width-8192", "width", "must be in 512..2048", params={"width": 8192}),
    Case("width-negative", "width", "must be in 512..2048", params={"width": -512}),
    Case("height-0", "height", "must be in 512..2048", params={"height": 0}),
    Case("height-256", "height", "must be in 512..2048", params={"height": 256}),
    Case("steps-0", "steps", "must be in 1..100", params={"steps": 0}),
    Case("steps-1000", "steps", "must be in 1..100", params={"steps": 1000}),
    Case("steps-negative", "steps", "must be in 1..100", params={"steps": -5}),
    Case("cfg-nan", "cfg_scale", "must be a number in 0.0..30.0", params={"cfg_scale": float("nan")}),
    Case("cfg-minus-1", "cfg_scale", "must be a number in 0.0..30.0", params={"cfg_scale": -1.0}),
    Case("cfg-infinity", "cfg_scale", "must be a number in 0.0..30.0", params={"cfg_scale": float("inf")}),
    Case("cfg-31", "cfg_scale", "must be a number in 0.0..30.0", params={"cfg_scale": 31.0}),
    Case("images-100", "num_images", "must be in 1..8", params={"num_images": 100}),
    Case("images-0", "num_images", "must be in 1..8", params={"num_images": 0}),
    Case("seed-2^62", "seed", "must be in -1..4294967295", params={"seed": 2**62}),
    Case("seed-minus-2", "seed", "must be in -1..4294967295", params={"seed": -2}),
    Case("scheduler-unknown", "scheduler", "must be one of euler_a, euler, dpmpp_2m_karras",
         params={"scheduler": "ddim"}),
    Case("scheduler-wrong-case", "scheduler", "must be one of euler_a, euler, dpmpp_2m_karras",
         params={"scheduler": "Euler_A"}),
    Case("rating-unknown", "rating", "must be one of sfw, general, sensitive, nsfw, questionable, explicit",
         params={"rating": "pg13"}),
    # 2**70 has no int64 form: over gRPC it can only arrive as another dtype, which Triton refuses.
    Case("seed-2^70", "seed", "must be in -1..4294967295", params={"seed": 2**70},
         tensors={"SEED": _s(str(2**70))}, grpc_field="'SEED'", grpc_rule="expects 'INT64'", triton_words=True),
]

GRPC_ONLY = [
    Case("text-invalid-utf8", "text", "must be valid UTF-8 (invalid start byte at byte 0)",
         tensors={"TEXT": _s(b"\xff\xfe\xfd")}),
    Case("text-truncated-utf8", "text", "must be valid UTF-8 (unexpected end of data at byte 3)",
         tensors={"TEXT": _s("少女".encode()[:4])}),
    Case("text-encoded-surrogate", "text", "must be valid UTF-8", tensors={"TEXT": _s(b"\xed\xa0\x80")}),
    Case("negative-prompt-invalid-utf8", "NEGATIVE_PROMPT", "must be valid UTF-8",
         tensors={"NEGATIVE_PROMPT": _s(b"\xc3\x28")}),
    Case("scheduler-invalid-utf8", "SCHEDULER", "must be valid UTF-8", tensors={"SCHEDULER": _s(b"\x80euler")}),
    Case("steps-as-int64", "'STEPS'", "data-type is 'INT64', but model 'sotai' expects 'INT32'",
         tensors={"STEPS": np.array([[1]], np.int64)}, triton_words=True),
    Case("cfg-as-fp64", "'CFG_SCALE'", "expects 'FP32'", tensors={"CFG_SCALE": np.array([[7.0]], np.float64)},
         triton_words=True),
    Case("width-as-fp32", "'WIDTH'", "expects 'INT32'", tensors={"WIDTH": np.array([[512.0]], np.float32)},
         triton_words=True),
    Case("text-as-int32", "'TEXT'", "expects 'BYTES'", tensors={"TEXT": np.array([[7]], np.int32)},
         triton_words=True),
    Case("quality-tags-as-string", "'QUALITY_TAGS'", "expects 'BOOL'", tensors={"QUALITY_TAGS": _s("yes")},
         triton_words=True),
    Case("default-negative-two-values", "'DEFAULT_NEGATIVE'", "unexpected shape",
         tensors={"DEFAULT_NEGATIVE": np.array([[True, False]], np.bool_)}, triton_words=True),
    Case("steps-without-batch-axis", "'STEPS'", "unexpected shape", tensors={"STEPS": np.array([1], np.int32)},
         triton_words=True),
    Case("steps-two-values", "'STEPS'", "unexpected shape", tensors={"STEPS": np.array([[1, 2]], np.int32)},
         triton_words=True),
    Case("missing-steps", "['STEPS']", "missing required input(s)", tensors={"STEPS": None}, triton_words=True),
    Case("missing-text", "['TEXT']", "missing required input(s)", tensors={"TEXT": None}, triton_words=True),
    # Triton words it "unexpected inference input 'COLOUR'" or "expected 10 inputs but got 11 ... ['COLOUR', ..."
    Case("unknown-input", "'COLOUR'", "for model 'sotai'", tensors={"COLOUR": _s("red")},
         triton_words=True),
    Case("rows-disagree", "'sotai'", "batch size does not match other inputs",
         tensors={"TEXT": np.array([[SCENE.encode()], [SCENE.encode()]], dtype=np.object_)}, triton_words=True),
    Case("batch-of-9", "'sotai'", "batch-size must be <= 8", tensors={}, batch=9, triton_words=True),
    Case("empty-batch", "'RATING'", "expected 1 string elements", tensors={}, batch=0, triton_words=True),
    # One bad row spoils its request (Triton answers per request), and names the field.
    Case("second-row-bad", "steps", "must be in 1..100", tensors={"STEPS": np.array([[1], [0]], np.int32)}, batch=2),
]

HTTP_ONLY = [
    Case("body-json-array", "body", "must be a JSON object", body=[SCENE]),
    Case("body-json-string", "body", "must be a JSON object", body=SCENE),
    Case("body-json-number", "body", "must be a JSON object", body=42),
    Case("body-json-null", "body", "must be a JSON object", body=None),
    Case("body-not-json", "body", "must be a JSON object (Expecting property name enclosed in double quotes)",
         body=b"{text: 1}"),
    Case("body-invalid-utf8", "body", "must be valid UTF-8 (invalid start byte at byte 10)",
         body=b'{"text": "\xff\xfe"}'),
    Case("body-empty", "body", "is required", body=b""),
    Case("text-lone-surrogate", "text", "must be valid UTF-8 (lone surrogate U+D800)",
         body=b'{"text": "\\ud800\\u5c11\\u5973"}'),
    Case("text-not-a-string", "text", "must be a string", body={"text": ["少女"]}),
    Case("steps-as-string", "steps", "must be an integer in 1..100", body={"text": SCENE, "steps": "20"}),
    Case("steps-as-float", "steps", "must be an integer in 1..100", body={"text": SCENE, "steps": 2.5}),
    Case("width-as-bool", "width", "must be an integer in 512..2048", body={"text": SCENE, "width": True}),
    Case("quality-tags-as-string", "quality_tags", "must be true or false", body={"text": SCENE, "quality_tags": "no"}),
    Case("default-negative-as-number", "default_negative", "must be true or false",
         body={"text": SCENE, "default_negative": 0}),
    Case("seed-null", "seed", "must be an integer in -1..4294967295", body={"text": SCENE, "seed": None}),
    Case("unknown-field", "colour", "is not a known field", body={"text": SCENE, "colour": "red"}),
    Case("text-and-tags", "text", "give exactly one of text, tags, prompt (got: text, tags)",
         body={"text": SCENE, "tags": ["1girl"]}),
    Case("tags-not-a-list", "tags", "must be a list of tag strings", body={"tags": "1girl"}),
    Case("tags-129", "tags", "must hold 1..128 tags", body={"tags": ["1girl"] * 129}),
    Case("tag-not-a-string", "tags[0]", "must be a string", body={"tags": [1]}),
    Case("tag-too-long", "tags[1]", "must be at most 128 characters", body={"tags": ["1girl", "x" * 129]}),
    Case("tag-control-char", "tags[0]", "must not contain control characters (found U+0000)", body={"tags": ["1girl\x00"]}),
    Case("tags-endpoint-text-10000", "text", "must be at most 2000 characters", body={"text": "桜" * 10_000},
         path="/v1/tags"),
    Case("a1111-steps-0", "steps", "must be in 1..100", body={"prompt": "1girl", "steps": 0}, path="/sdapi/v1/txt2img"),
    Case("a1111-width-1000", "width", "must be a multiple of 32 in 512..2048", body={"prompt": "1girl", "width": 1000},
         path="/sdapi/v1/txt2img"),
    Case("a1111-batch-100", "batch_size", "must be in 1..8", body={"prompt": "1girl", "batch_size": 100},
         path="/sdapi/v1/txt2img"),
    Case("a1111-unknown-sampler", "sampler_name", "is an A1111 sampler this server does not have",
         body={"prompt": "1girl", "sampler_name": "DDIM"}, path="/sdapi/v1/txt2img"),
    Case("a1111-empty-prompt", "prompt", "must not be empty or only whitespace", body={"prompt": "  "},
         path="/sdapi/v1/txt2img"),
    Case("a1111-hires-size", "hr_scale", "the hires size must be a multiple of 32 in 512..2048",
         body={"prompt": "1girl", "width": 512, "height": 512, "enable_hr": True, "hr_scale": 1.3},
         path="/sdapi/v1/txt2img"),
    Case("a1111-img2img-base64", "init_images[0]", "is not valid base64",
         body={"prompt": "1girl", "init_images": ["@@@"]}, path="/sdapi/v1/img2img"),
]

CORPUS = BOTH + GRPC_ONLY + HTTP_ONLY
GRPC_CASES = [c for c in CORPUS if c.over_grpc]
HTTP_CASES = [c for c in CORPUS if c.over_http]
