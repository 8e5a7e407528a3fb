"""The A1111-compatible API, called the way A1111's own API documentation and common tools call it.

Request shapes follow the A1111 wiki's API examples (`{"prompt": "puppy dog", "steps": 5}`, the
options payload with sd_model_checkpoint and CLIP_stop_at_last_layers) and the full txt2img body
that chat front-ends send.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image


@pytest.fixture(scope="module")
def url(gateway):
    return gateway.url


def decode(b64: str) -> Image.Image:
    # The wiki's own decoding line: base64.b64decode(i.split(",", 1)[0])
    return Image.open(io.BytesIO(base64.b64decode(b64.split(",", 1)[0])))


def test_wiki_example_txt2img(url):
    payload = {"prompt": "puppy dog", "steps": 5}
    response = requests.post(url=f"{url}/sdapi/v1/txt2img", json=payload, timeout=120)
    r = response.json()
    assert response.status_code == 200, r
    assert set(r) == {"images", "parameters", "info"}
    (image,) = [decode(i) for i in r["images"]]
    assert image.format == "PNG" and image.size == (512, 512)
    assert "Steps: 5" in image.info["parameters"], "A1111 tools read the settings back from the PNG"
    info = json.loads(r["info"])
    assert info["steps"] == 5 and 0 <= info["seed"] < 2**32 and info["all_seeds"] == [info["seed"]]
    assert info["sotai"]["route"] in ("diffusion", "diffusion_stream"), "a prompt in tags goes straight to diffusion"
    assert info["prompt"] == "puppy dog"
    assert r["parameters"]["prompt"] == "puppy dog"


def test_a_japanese_prompt_goes_through_rag_and_dart_and_info_says_so(url):
    payload = {"prompt": "銀髪の少女が夜の桜の下で微笑んでいる", "negative_prompt": "lowres", "steps": 2,
               "cfg_scale": 7, "width": 512, "height": 576, "seed": 123, "sampler_name": "Euler a",
               "batch_size": 1, "n_iter": 1}
    r = requests.post(f"{url}/sdapi/v1/txt2img", json=payload, timeout=120).json()
    info = json.loads(r["info"])
    assert info["sotai"]["input"] == "japanese_text"
    assert info["sotai"]["route"].startswith("rag > dart > diffusion")
    assert "RAG and Dart" in info["sotai"]["note"]
    assert info["prompt"] != payload["prompt"] and info["sotai"]["tags"], "the prompt painted is Dart's tags"
    assert info["seed"] == 123 and decode(r["images"][0]).size == (512, 576)


def test_full_front_end_body_with_batches_and_iterations(url):
    payload = {
        "prompt": "1girl, silver hair, cherry blossoms, night", "negative_prompt": "lowres, bad anatomy",
        "sampler_name": "DPM++ 2M", "scheduler": "Karras", "steps": 2, "cfg_scale": 6.5,
        "width": 512, "height": 512, "restore_faces": False, "enable_hr": False, "hr_upscaler": "Latent",
        "hr_scale": 2, "denoising_strength": 0.7, "hr_second_pass_steps": 0, "seed": 1000,
        "batch_size": 2, "n_iter": 2, "override_settings": {"CLIP_stop_at_last_layers": 2},
        "override_settings_restore_afterwards": True, "save_images": True, "send_images": True,
        "do_not_save_grid": False, "do_not_save_samples": False,
    }
    r = requests.post(f"{url}/sdapi/v1/txt2img", json=payload, timeout=120).json()
    info = json.loads(r["info"])
    assert len(r["images"]) == 4
    assert info["all_seeds"] == [1000, 1000, 1002, 1002], "iteration k uses seed + k * batch_size"
    assert info["sampler_name"] == "DPM++ 2M" and info["scheduler"] == "Karras" and info["cfg_scale"] == 6.5
    pixels = [np.asarray(decode(i).convert("RGB"), dtype=np.int64) for i in r["images"]]
    # Decoded pixels, not base64 PNGs (those differ by their parameters chunk even for equal pixels).
    assert np.abs(pixels[0] - pixels[2]).mean() > 1.0, "iteration 2 paints with another seed"
    assert np.abs(pixels[0] - pixels[1]).mean() > 1.0, "a batch's images are distinct"
    # Nothing silently dropped: what has no effect here is listed.
    assert {"hr_upscaler", "hr_scale", "denoising_strength"} <= set(info["sotai"]["ignored"])
    assert info["clip_skip"] == 2 and "no further effect" in info["sotai"]["notes"]["clip_skip"]


@pytest.mark.parametrize("field, value", [("restore_faces", True), ("sampler_name", "LMS"),
                                          ("width", 1001), ("steps", 0), ("n_iter", 9), ("prompt", " ")])
def test_what_cannot_be_honoured_is_422_naming_the_field(url, field, value):
    payload = {"prompt": "1girl", "steps": 2, field: value}
    response = requests.post(f"{url}/sdapi/v1/txt2img", json=payload, timeout=60)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_samplers_models_and_options(url):
    samplers = requests.get(f"{url}/sdapi/v1/samplers", timeout=10).json()
    assert [s["name"] for s in samplers] == ["DPM++ 2M", "Euler a", "Euler"], "A1111 1.9+ names"
    assert samplers[0]["options"] == {"scheduler": "karras"}
    assert all({"name", "aliases", "options"} <= set(s) for s in samplers)
    (model,) = requests.get(f"{url}/sdapi/v1/sd-models", timeout=10).json()
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(model)
    options = requests.get(f"{url}/sdapi/v1/options", timeout=10).json()
    assert options["sd_model_checkpoint"] == model["title"]
    # The wiki's options payload, naming the checkpoint this server has.
    option_payload = {"sd_model_checkpoint": model["title"], "CLIP_stop_at_last_layers": 2}
    response = requests.post(f"{url}/sdapi/v1/options", json=option_payload, timeout=10)
    assert response.status_code == 200 and response.json()["ignored"] == ["CLIP_stop_at_last_layers"]
    assert "no further effect" in response.json()["notes"]["CLIP_stop_at_last_layers"]
    assert requests.get(f"{url}/sdapi/v1/options", timeout=10).json()["CLIP_stop_at_last_layers"] == 2
    wrong = requests.post(f"{url}/sdapi/v1/options", json={"sd_model_checkpoint": "Anything-V3.0-pruned.ckpt [2700c435]"},
                          timeout=10)
    assert wrong.status_code == 422 and wrong.json()["field"] == "sd_model_checkpoint"


def test_progress_while_idle_and_while_painting(url):
    idle = requests.get(f"{url}/sdapi/v1/progress", timeout=10).json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
    assert {"progress", "eta_relative", "state", "current_image", "textinfo"} <= set(idle)

    done = threading.Event()

    def paint():
        requests.post(f"{url}/sdapi/v1/txt2img", json={"prompt": "1girl", "steps": 8, "seed": 1}, timeout=120)
        done.set()

    threading.Thread(target=paint, daemon=True).start()
    seen = []
    deadline = time.monotonic() + 120
    while not done.is_set():
        assert time.monotonic() < deadline, "the txt2img request never finished"
        state = requests.get(f"{url}/sdapi/v1/progress", timeout=10).json()
        if state["state"]["job_count"]:
            seen.append(state)
        time.sleep(0.02)
    assert seen, "the running job was never reported"
    assert all(0.0 <= s["progress"] <= 1.0 for s in seen)
    assert seen[-1]["state"]["sampling_steps"] == 8
    assert requests.get(f"{url}/sdapi/v1/progress", timeout=10).json()["state"]["job_count"] == 0


# The body the widely used `webuiapi` client (0.9.17) sends for `api.txt2img(prompt=..., steps=2, seed=7)`
# with its defaults: WebUIApi(sampler="Euler a", scheduler="automatic", steps=20).
def webuiapi_txt2img_body(**changes) -> dict:
    body = {
        "enable_hr": False, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 0, "hr_resize_x": 0,
        "hr_resize_y": 0, "hr_checkpoint_name": None, "hr_sampler_name": None, "hr_scheduler": None,
        "hr_prompt": "", "hr_negative_prompt": "", "denoising_strength": 0.7, "firstphase_width": 0,
        "firstphase_height": 0, "prompt": "1girl, silver hair", "styles": [], "seed": 7, "subseed": -1,
        "subseed_strength": 0.0, "seed_resize_from_h": 0, "seed_resize_from_w": 0, "batch_size": 1, "n_iter": 1,
        "steps": 2, "cfg_scale": 7.0, "width": 512, "height": 512, "restore_faces": False, "tiling": False,
        "do_not_save_samples": False, "do_not_save_grid": False, "negative_prompt": "", "eta": 1.0, "s_churn": 0,
        "s_tmax": 0, "s_tmin": 0, "s_noise": 1, "override_settings": {}, "override_settings_restore_afterwards": True,
        "sampler_name": "Euler a", "scheduler": "automatic", "sampler_index": "Euler a", "script_name": None,
        "script_args": [], "send_images": True, "save_images": False, "alwayson_scripts": {},
    }
    return {**body, **changes}


def pixels_of(url, body) -> np.ndarray:
    response = requests.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return np.asarray(decode(response.json()["images"][0]).convert("RGB"), dtype=np.int64)


def test_webuiapi_start_up_and_txt2img_body(url):
    # WebUIApi() start-up: get_scripts() (to look for ADetailer), then the util_* look-ups.
    assert requests.get(f"{url}/sdapi/v1/scripts", timeout=10).json() == {"txt2img": [], "img2img": []}
    titles = sorted(m["title"] for m in requests.get(f"{url}/sdapi/v1/sd-models", timeout=10).json())
    assert requests.get(f"{url}/sdapi/v1/options", timeout=10).json()["sd_model_checkpoint"] == titles[0]
    schedulers = requests.get(f"{url}/sdapi/v1/schedulers", timeout=10).json()
    assert [s["name"] for s in schedulers] == ["automatic", "karras"]
    assert all(set(s) == {"name", "label", "aliases", "default_rho", "need_inner_model"} for s in schedulers)
    for path, empty in (("loras", []), ("sd-vae", [])):
        response = requests.get(f"{url}/sdapi/v1/{path}", timeout=10)
        assert response.status_code == 200 and response.json() == empty, path
    for path in ("latent-upscale-modes", "upscalers"):  # the hires fix's (their contents: the hires test)
        response = requests.get(f"{url}/sdapi/v1/{path}", timeout=10)
        assert response.status_code == 200 and all("name" in item for item in response.json()), path
    assert requests.get(f"{url}/sdapi/v1/cmd-flags", timeout=10).json()["api"] is True
    # util_set_model(title): POST {"sd_model_checkpoint": title}
    assert requests.post(f"{url}/sdapi/v1/options", json={"sd_model_checkpoint": titles[0]}, timeout=10).status_code == 200

    response = requests.post(f"{url}/sdapi/v1/txt2img", json=webuiapi_txt2img_body(), timeout=120)
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert info["sampler_name"] == "Euler a" and info["scheduler"] == "Automatic"
    assert {"eta", "s_noise", "denoising_strength", "hr_upscaler", "hr_scale"} <= set(info["sotai"]["ignored"])
    assert "scheduler" not in info["sotai"]["ignored"] and "sampler_index" not in info["sotai"]["ignored"]


def test_posting_back_the_whole_options_dict_changes_nothing(url):
    options = requests.get(f"{url}/sdapi/v1/options", timeout=10).json()
    response = requests.post(f"{url}/sdapi/v1/options", json=options, timeout=10)
    assert response.status_code == 200 and response.json()["ignored"] == []
    changed = {**options, "samples_format": "jpg", "some_extension_option": True}
    assert requests.post(f"{url}/sdapi/v1/options", json=changed, timeout=10).json()["ignored"] == \
        ["samples_format", "some_extension_option"], "changes we cannot honour are listed, not refused"


def test_every_spelling_a1111_maps_paints_the_same(url):
    karras = [pixels_of(url, webuiapi_txt2img_body(sampler_name=name, sampler_index=name, scheduler=sched))
              for name, sched in (("DPM++ 2M", "karras"), ("DPM++ 2M", "Karras"), ("DPM++ 2M Karras", None),
                                  ("k_dpmpp_2m", "automatic"), ("dpm++ 2m", ""))]
    for other in karras[1:]:
        assert np.array_equal(karras[0], other)
    euler_a = pixels_of(url, webuiapi_txt2img_body(sampler_name="k_euler_a", sampler_index="k_euler_a"))
    assert np.abs(euler_a - karras[0]).mean() > 1.0, "the sampler named is the one painted with"
    # clip_skip has no effect on SDXL (its encoders' penultimate layer is used already), as in A1111
    skipped = pixels_of(url, webuiapi_txt2img_body(sampler_name="Euler a", clip_skip=2))
    assert np.array_equal(skipped, euler_a)


def test_a1111_prompt_weights_weight_one_paints_the_plain_prompt(url):
    plain = pixels_of(url, webuiapi_txt2img_body())  # prompt "1girl, silver hair"
    assert np.array_equal(pixels_of(url, webuiapi_txt2img_body(prompt="1girl, (silver hair:1.0)")), plain)
    assert np.abs(pixels_of(url, webuiapi_txt2img_body(prompt="1girl, (silver hair:1.5)")) - plain).mean() > 0.1


@pytest.mark.parametrize("changes, field", [
    ({"scheduler": "KARRAS"}, "scheduler"),  # A1111 maps a schedule type's name or label, exactly
    ({"scheduler": "Karras"}, "scheduler"),  # Euler a with Karras: not a combination this server has
    ({"scheduler": "beta"}, "scheduler"),
    ({"sampler_name": "DPM++ 2M Exponential"}, "sampler_name"),
    ({"sampler_name": "UniPC"}, "sampler_name"),
    ({"sampler_name": None, "sampler_index": "LMS"}, "sampler_index"),
    ({"script_name": "x/y/z plot"}, "script_name"),
    ({"alwayson_scripts": {"ADetailer": {"args": [True]}}}, "alwayson_scripts"),
    ({"restore_faces": True}, "restore_faces"),
    ({"enable_hr": True, "hr_scale": 1.3}, "hr_scale"),
    ({"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"}, "hr_upscaler"),
    ({"enable_hr": True, "hr_prompt": "1boy"}, "hr_prompt"),
    ({"enable_hr": True, "hr_checkpoint_name": "other.safetensors"}, "hr_checkpoint_name"),
    ({"clip_skip": 13}, "clip_skip"),
    ({"override_settings": {"CLIP_stop_at_last_layers": "two"}}, "override_settings.CLIP_stop_at_last_layers"),
])
def test_webuiapi_body_with_what_we_cannot_do_is_422_naming_it(url, changes, field):
    response = requests.post(f"{url}/sdapi/v1/txt2img", json=webuiapi_txt2img_body(**changes), timeout=60)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_png_info_reads_our_parameters_back_as_a1111_does(url):
    r = requests.post(f"{url}/sdapi/v1/txt2img", json={"prompt": "1girl", "steps": 2, "seed": 5, "width": 512,
                                                       "height": 576}, timeout=120).json()
    # The request shape of A1111 front-ends' "PNG Info" (data URL) and of webuiapi (plain base64).
    for image in (r["images"][0], "data:image/png;base64," + r["images"][0]):
        response = requests.post(f"{url}/sdapi/v1/png-info", json={"image": image}, timeout=10)
        assert response.status_code == 200, response.text
        got = response.json()
        assert set(got) == {"info", "items", "parameters"}
        assert got["info"] == decode(r["images"][0]).info["parameters"]
        p = got["parameters"]
        assert p["Steps"] == "2" and p["Seed"] == "5" and (p["Size-1"], p["Size-2"]) == ("512", "576")
        assert p["Prompt"].startswith("1girl")
    bad = requests.post(f"{url}/sdapi/v1/png-info", json={"image": "not an image"}, timeout=10)
    assert bad.status_code == 422 and bad.json()["field"] == "image"


def png_b64(color: tuple[int, int, int]) -> str:
    """As webuiapi's b64_img sends an init image: a data URL."""
    buf = io.BytesIO()
    Image.new("RGB", (256, 192), color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def webuiapi_img2img_body(**changes) -> dict:
    # The body webuiapi 0.9.17 sends for `api.img2img(images=[img], prompt=..., denoising_strength=0.5, ...)`.
    body = {k: v for k, v in webuiapi_txt2img_body().items() if not k.startswith(("hr_", "enable_hr", "firstphase"))}
    body.update({
        "init_images": [png_b64((200, 40, 40))], "resize_mode": 0, "denoising_strength": 0.5, "mask_blur": 4,
        "inpainting_fill": 0, "inpaint_full_res": True, "inpaint_full_res_padding": 0, "inpainting_mask_invert": 0,
        "initial_noise_multiplier": 1, "image_cfg_scale": 1.5, "include_init_images": False, "steps": 4,
    })
    return {**body, **changes}


def test_webuiapi_img2img_body_repaints_the_init_image(url):
    response = requests.post(f"{url}/sdapi/v1/img2img", json=webuiapi_img2img_body(), timeout=120)
    assert response.status_code == 200, response.text
    data = response.json()
    info = json.loads(data["info"])
    assert info["denoising_strength"] == 0.5 and "Denoising strength: 0.5" in info["infotexts"][0]
    red = np.asarray(decode(data["images"][0]).convert("RGB"), dtype=np.int64)
    assert red.shape == (512, 512, 3)
    blue_body = webuiapi_img2img_body(init_images=[png_b64((40, 40, 200))])
    blue = np.asarray(decode(requests.post(f"{url}/sdapi/v1/img2img", json=blue_body, timeout=120)
                             .json()["images"][0]).convert("RGB"), dtype=np.int64)
    assert np.abs(red - blue).mean() > 0.5  # measured 1.5 on the tiny model; an ignored init image gives 0


@pytest.mark.parametrize("changes, field", [
    ({"mask": png_b64((255, 255, 255))}, "mask"),
    ({"resize_mode": 1}, "resize_mode"),
    ({"init_images": ["data:image/png;base64,@@@"]}, "init_images[0]"),
    ({"init_images": [base64.b64encode(b"not an image").decode()]}, "init_images[0]"),
    ({"init_images": []}, "init_images"),
    ({"denoising_strength": 1.5}, "denoising_strength"),
])
def test_img2img_what_cannot_be_honoured_is_422_naming_the_field(url, changes, field):
    response = requests.post(f"{url}/sdapi/v1/img2img", json=webuiapi_img2img_body(**changes), timeout=60)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_webuiapi_hires_fix_returns_the_upscaled_size_and_says_so(url):
    body = webuiapi_txt2img_body(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent (nearest)", hr_second_pass_steps=2,
                                 denoising_strength=0.6, hr_prompt="1girl, silver hair", hr_sampler_name="Euler a")
    response = requests.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=180)
    assert response.status_code == 200, response.text
    data = response.json()
    assert decode(data["images"][0]).size == (768, 768)
    info = json.loads(data["info"])
    text = info["infotexts"][0]
    for words in ("Size: 512x512", "Hires upscale: 1.5", "Hires steps: 2", "Hires upscaler: Latent (nearest)",
                  "Denoising strength: 0.6"):
        assert words in text, text
    assert info["denoising_strength"] == 0.6
    assert not {"hr_scale", "hr_upscaler", "denoising_strength"} & set(info["sotai"]["ignored"])
    modes = requests.get(f"{url}/sdapi/v1/latent-upscale-modes", timeout=10).json()
    assert {"name": "Latent (nearest)"} in modes and len(modes) == 6
    upscalers = [u["name"] for u in requests.get(f"{url}/sdapi/v1/upscalers", timeout=10).json()]
    assert upscalers == ["None", "Lanczos", "Nearest"]
