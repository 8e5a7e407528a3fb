"""sotai.client against the session's Triton: every route, both protocols, sync and asyncio, progress, errors."""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import replace

import pytest
from PIL import Image

from sotai.client import AsyncSotaiClient, GenerateRequest, SotaiClient, TritonUnavailable
from sotai.client.errors import invalid_input_from
from sotai.errors import InvalidInput
from sotai.diffusion.png import decode_png
from sotai.params import GenerationParams

SCENE = "銀髪の少女が夜の桜の下で微笑んでいる"
FAST = GenerationParams(steps=2, width=512, height=512, seed=77)


@pytest.fixture(scope="module")
def reference(client):
    """One image through the `sotai` ensemble: the bytes every other route must reproduce."""
    result = client.generate(GenerateRequest(SCENE, FAST))
    assert result.route == "sotai"
    return result


def test_streamed_route_reports_progress_and_paints_the_same_bytes_as_the_ensemble(client, reference):
    events = []
    result = client.generate(GenerateRequest(SCENE, FAST), on_progress=events.append)
    assert result.route.startswith("rag > dart > diffusion")
    assert result.images == reference.images and result.prompt == reference.prompt and result.seed == 77
    stages = [e.stage for e in events]
    assert stages[:3] == ["rag", "rag", "dart"] and "diffusion" in stages
    dart = next(e for e in events if e.stage == "dart")
    assert dart.tags == result.tags, "Dart's tags are reported before painting starts"
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and 0.0 <= fractions[0] and fractions[-1] <= 1.0


@pytest.mark.parametrize("request_", [
    GenerateRequest(SCENE, FAST, top_k=5),
    GenerateRequest(SCENE, GenerationParams(steps=2, width=512, height=512, seed=9, rating="sensitive",
                                            quality_tags=False, default_negative=False, num_images=2,
                                            scheduler="euler", cfg_scale=1.0, negative_prompt="lowres")),
], ids=["top_k", "every-parameter"])
def test_the_ensemble_and_the_chain_give_the_same_outputs(client, request_):
    """One request, two routes: the `sotai` ensemble and the client's rag -> dart -> diffusion chain (taken
    for a request with a deadline) must agree on every output (top_k once reached rag on the chain only)."""
    ensemble = client.generate(request_)
    chained = client.generate(replace(request_, timeout_s=600.0))
    assert (ensemble.route, chained.route) == ("sotai", "rag > dart > diffusion")
    assert chained.tags == ensemble.tags and chained.prompt == ensemble.prompt
    assert chained.seed == ensemble.seed == request_.params.seed
    assert len(ensemble.images) == request_.params.num_images
    assert [decode_png(i).tobytes() for i in chained.images] == [decode_png(i).tobytes() for i in ensemble.images]


def test_diffusion_steps_stream_when_the_server_has_diffusion_stream(client):
    if not client.catalog().has("diffusion_stream"):
        pytest.skip("the repository has no decoupled diffusion_stream model (see the contract in issue 6)")
    events = []
    client.generate(GenerateRequest(SCENE, GenerationParams(steps=3, width=512, height=512, seed=5)),
                    on_progress=events.append)
    steps = [(e.step, e.total) for e in events if e.stage == "diffusion" and e.step > 0]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert any(e.preview[:8] == b"\x89PNG\r\n\x1a\n" for e in events if e.stage == "diffusion")


def test_tags_bypass_rag_and_are_kept_by_dart(client):
    given = ("1girl", "silver_hair", "cherry_blossoms")
    result = client.generate(GenerateRequest(tags=given, params=FAST))
    assert result.route == "dart > diffusion"
    kept = [t for t in result.tags if t["reason"].get("signal") == "user"]
    assert {t["tag"].replace(" ", "_") for t in kept} == set(given)
    assert Image.open(io.BytesIO(result.images[0])).size == (512, 512)
    only_tags = client.tags(tags=given)
    assert {t["tag"].replace(" ", "_") for t in only_tags.tags} >= set(given)


def test_a_prompt_goes_straight_to_diffusion_exactly_as_given(client):
    result = client.generate(GenerateRequest(prompt="1girl, silver hair, night", params=FAST))
    assert result.route == "diffusion"
    assert result.prompt == "1girl, silver hair, night"
    assert [t["tag"] for t in result.tags] == ["1girl", "silver hair", "night"]


def test_http_protocol_gives_the_same_result(triton, reference):
    with SotaiClient(triton.http_url, protocol="http") as http:
        result = http.generate(GenerateRequest(SCENE, FAST))
        assert result.images == reference.images and result.tags == reference.tags
        events = []
        streamed = http.generate(GenerateRequest(SCENE, FAST), on_progress=events.append)
        assert streamed.route == "rag > dart > diffusion", "HTTP cannot read a decoupled model: unary diffusion"
        assert streamed.images == reference.images


def test_asyncio_client_answers_every_route_at_once(triton, reference):
    async def main():
        async with AsyncSotaiClient(triton.grpc_url) as c:
            seen = []
            results = await asyncio.gather(
                c.generate(GenerateRequest(SCENE, FAST)),
                c.generate(GenerateRequest(SCENE, FAST), on_progress=seen.append),
                c.tags(SCENE, FAST),
            )
            return results, seen

    (plain, streamed, tags), seen = asyncio.run(main())
    assert plain.images == reference.images == streamed.images
    assert tags.prompt == reference.prompt
    assert seen and seen[-1].stage == "diffusion"


def test_asyncio_client_runs_requests_concurrently(triton):
    # Long enough to paint (16 steps) that the tags call, started after it, is answered first when the
    # calls overlap; a client that awaited each call in turn would answer the tags call last.
    slow = GenerationParams(steps=16, width=512, height=512, seed=5)
    finished: dict[str, float] = {}

    async def timed(name, call):
        result = await call
        finished[name] = time.monotonic()
        return result

    async def main():
        async with AsyncSotaiClient(triton.grpc_url) as c:
            await asyncio.gather(timed("image", c.generate(GenerateRequest(SCENE, slow))),
                                 timed("tags", c.tags(SCENE, FAST)))

    asyncio.run(main())
    assert finished["tags"] < finished["image"], finished


def test_random_seed_is_drawn_once_so_the_returned_seed_reproduces_tags_and_image(client):
    params = GenerationParams(steps=2, width=512, height=512, seed=-1)
    first = client.generate(GenerateRequest(SCENE, params))
    again = client.generate(GenerateRequest(SCENE, GenerationParams(steps=2, width=512, height=512, seed=first.seed)))
    assert again.tags == first.tags and again.images == first.images


@pytest.mark.parametrize("request_, field", [
    (GenerateRequest(SCENE, tags=("1girl",)), "text"),
    (GenerateRequest(""), "text"),
    (GenerateRequest(SCENE, GenerationParams(steps=0)), "steps"),
    (GenerateRequest(tags=("",)), "tags[0]"),
])
def test_bad_requests_name_the_field(client, request_, field):
    with pytest.raises(InvalidInput) as err:
        client.generate(request_)
    assert err.value.field == field


def test_a_stage_error_comes_back_as_invalid_input_in_the_stage_s_words():
    message = ("[StatusCode.INVALID_ARGUMENT] in ensemble 'sotai', candidates[0].category='x' is invalid: "
               "must be one of general, artist")
    err = invalid_input_from(message)
    assert err is not None and err.field == "candidates[0].category"
    assert str(err) == "candidates[0].category='x' is invalid: must be one of general, artist"


def test_an_unreachable_server_is_triton_unavailable():
    from sotai.serving.server import free_port

    with SotaiClient(f"127.0.0.1:{free_port()}", timeout_s=5) as c:
        with pytest.raises(TritonUnavailable) as err:
            c.generate(GenerateRequest(SCENE, FAST))
    assert "make serve" in str(err.value)
