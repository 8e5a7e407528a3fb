"""Fuzz the gateway from its own OpenAPI schema (schemathesis, a bounded number of examples per
operation): whatever arrives, no 5xx, and every answer is one the schema documents.

Valid but expensive values (many steps, large or many images) are scaled down before sending, so
the image endpoints run their real path in CI time; invalid values go out as generated.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in requirements.lock: run `make venv`")

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance,
)

from sotai.limits import NUM_IMAGES_RANGE, SIZE_MULTIPLE, SIZE_RANGE, STEPS_RANGE  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def gateway_schema():
    """The gateway's OpenAPI, as served (built without starting anything: the app connects lazily)."""
    from sotai.gateway import create_app
    from sotai.settings import Settings

    app = create_app(Settings(profile="tiny"), triton_urls="127.0.0.1:1", api_key="", ui=False)
    return schemathesis.openapi.from_dict(app.openapi())


SCHEMA = gateway_schema()
OPERATIONS = [result.ok().label for result in SCHEMA.get_all_operations()]


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def cheap(body: dict) -> dict:
    """The same request, painted as small as the limits allow (invalid values untouched)."""
    out = dict(body)
    if _int(out.get("steps")) and STEPS_RANGE[0] <= out["steps"] <= STEPS_RANGE[1]:
        out["steps"] = min(out["steps"], 2)
    for key in ("num_images", "batch_size", "n_iter"):
        if _int(out.get(key)) and NUM_IMAGES_RANGE[0] <= out[key] <= NUM_IMAGES_RANGE[1]:
            out[key] = 1
    for key in ("width", "height"):
        value = out.get(key)
        if _int(value) and SIZE_RANGE[0] <= value <= SIZE_RANGE[1] and value % SIZE_MULTIPLE == 0:
            out[key] = SIZE_RANGE[0]
    return out


# Requests that must succeed, beside whatever is generated (random text rarely passes every limit,
# so without these the painting path would hardly run).
SCENE = "銀髪の少女が夜の桜の下で微笑んでいる"
GOOD = {
    "POST /v1/tags": [{"text": SCENE}, {"tags": ["1girl", "night"]}],
    "POST /v1/images": [{"text": SCENE, "seed": 5}, {"tags": ["1girl"], "width": 544, "scheduler": "euler"}],
    "POST /v1/images/stream": [{"text": SCENE, "steps": 2}],
    "POST /sdapi/v1/txt2img": [{"prompt": "1girl, night", "sampler_name": "Euler"}, {"prompt": SCENE, "seed": 3}],
}


def strategy(operation):
    """Valid cases and, where the operation takes input, cases that break its schema."""
    from schemathesis import GenerationMode

    modes = [GenerationMode.POSITIVE]
    if operation.body or operation.query:
        modes.append(GenerationMode.NEGATIVE)
    return st.one_of(*(operation.as_strategy(mode) for mode in modes))


def test_the_fuzz_covers_the_api():
    assert {"POST /v1/tags", "POST /v1/images", "POST /v1/images/stream", "POST /sdapi/v1/txt2img",
            "GET /sdapi/v1/progress", "POST /sdapi/v1/options", "GET /readyz"} <= set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_gateway_never_answers_5xx(api_gateway, label):
    operation = SCHEMA.find_operation_by_label(label)

    statuses = []

    @given(case=strategy(operation))
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def run(case):
        if isinstance(case.body, dict):
            case.body = cheap(case.body)
        response = case.call(base_url=api_gateway.url, timeout=120)
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    for body in GOOD.get(label, []):
        run = example(case=operation.Case(body=body, media_type="application/json"))(run)
    run()
    if label in GOOD:
        assert statuses.count(200) >= len(GOOD[label]), statuses
