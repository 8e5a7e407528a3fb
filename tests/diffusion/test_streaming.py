"""Decoupled `diffusion`: progress (step i of N, a small preview) streams before the images.

Served here with the decoupled config the adapter supports (its own small server over the session's
exported models), also carrying the optional Animagine inputs RATING, QUALITY_TAGS, DEFAULT_NEGATIVE.
"""

from __future__ import annotations

import io
import queue
import shutil
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from sotai.contracts import DIFFUSION, ONNX_MODELS, ModelContract, Tensor, render_config
from sotai.diffusion.png import read_png_parameters
from sotai.params import GenerationParams

from .test_triton_diffusion import diffusion_inputs

PROGRESS = (Tensor("STEP", "INT32"), Tensor("TOTAL_STEPS", "INT32"), Tensor("PREVIEW", "STRING"))
ANIMAGINE = (Tensor("RATING", "STRING", optional=True), Tensor("QUALITY_TAGS", "BOOL", optional=True),
             Tensor("DEFAULT_NEGATIVE", "BOOL", optional=True))
STREAMING = replace(DIFFUSION, decoupled=True, inputs=DIFFUSION.inputs + ANIMAGINE, outputs=DIFFUSION.outputs + PROGRESS)


@pytest.fixture(scope="module")
def streaming_server(tiny_repository, tmp_path_factory):
    from sotai.serving.server import TritonServer, free_port

    repo = tmp_path_factory.mktemp("streaming") / "repository"
    for name in (*ONNX_MODELS, "diffusion"):
        shutil.copytree(tiny_repository / name, repo / name)
    (repo / "diffusion" / "config.pbtxt").write_text(render_config(STREAMING))
    # The launcher expects the ensemble's folder; explicit loading serves only the five models above.
    (repo / "sotai").mkdir()
    (repo / "sotai" / "config.pbtxt").write_text(render_config(ModelContract(name="sotai", inputs=(), outputs=())))
    server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          log_file=repo.parent / "tritonserver.log",
                          extra_args=["--model-control-mode=explicit",
                                      *(f"--load-model={m}" for m in (*ONNX_MODELS, "diffusion"))])
    with server:
        yield server


def stream(server, inputs) -> list:
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(server.grpc_url)
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        client.async_stream_infer("diffusion", inputs)
        out = []
        while True:
            result, error = responses.get(timeout=120)
            if error is not None:
                raise error
            out.append(result)
            final = result.get_response().parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                return out
    finally:
        client.stop_stream()


def test_progress_streams_every_step_then_the_images(streaming_server):
    import tritonclient.grpc as grpc

    p = GenerationParams(steps=3, width=512, height=640, seed=8, num_images=2)
    responses = stream(streaming_server, diffusion_inputs(grpc, "1girl", [p]))
    *progress, last = responses
    assert [int(r.as_numpy("STEP")[0][0]) for r in progress] == [1, 2, 3]
    assert all(int(r.as_numpy("TOTAL_STEPS")[0][0]) == 3 for r in progress)
    preview = Image.open(io.BytesIO(progress[-1].as_numpy("PREVIEW")[0][0]))
    assert preview.size == (512 // 8, 640 // 8)
    images = last.as_numpy("IMAGE")
    assert images.shape == (1, 2) and int(last.as_numpy("SEED_USED")[0][0]) == 8
    assert np.asarray(Image.open(io.BytesIO(images[0][0]))).shape == (640, 512, 3)


def test_animagine_defaults_can_be_switched_off_per_request(streaming_server):
    import tritonclient.grpc as grpc

    p = GenerationParams(steps=1, width=512, height=512, seed=1)

    def extra(name, value, wire):
        t = grpc.InferInput(name, [1, 1], wire)
        t.set_data_from_numpy(np.array([[value]], dtype=np.object_ if wire == "BYTES" else np.bool_))
        return t

    on = stream(streaming_server, diffusion_inputs(grpc, "1girl", [p]) + [extra("RATING", b"sensitive", "BYTES")])[-1]
    off = stream(streaming_server, diffusion_inputs(grpc, "1girl", [p]) + [
        extra("QUALITY_TAGS", False, "BOOL"), extra("DEFAULT_NEGATIVE", False, "BOOL")])[-1]
    on_meta = read_png_parameters(on.as_numpy("IMAGE")[0][0])
    off_meta = read_png_parameters(off.as_numpy("IMAGE")[0][0])
    assert on_meta["prompt"] == "1girl, rating: sensitive, masterpiece, best quality"
    assert on_meta["negative_prompt"].startswith("nsfw, lowres")
    assert (off_meta["prompt"], off_meta["negative_prompt"]) == ("1girl", "")


def test_a_bad_request_ends_its_stream_with_invalid_arg(streaming_server):
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    p = GenerationParams(steps=2, width=512, height=512, seed=1, num_images=9)
    with pytest.raises(InferenceServerException, match="num_images=9"):
        stream(streaming_server, diffusion_inputs(grpc, "1girl", [p]))
