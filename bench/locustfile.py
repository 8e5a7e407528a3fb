"""Load on the gateway's HTTP API (locust, headless). Used by `sotai bench triton` (its gateway part):

    locust -f bench/locustfile.py --headless -u 8 -r 8 --run-time 60s --host http://127.0.0.1:7860 \
        --csv out/bench/gateway

Each simulated user sends the next request as soon as the last one answered (closed loop, like
perf_analyzer's concurrency). The request mix: 3 image requests (the whole pipeline) per tags request.
With SOTAI_API_KEY set, the key is sent as a bearer token.
"""

from __future__ import annotations

import itertools
import os

from locust import HttpUser, constant, task

SCENES = ["銀髪の少女が夜の桜の下で微笑んでいる", "雨の街角で傘をさす制服の女の子", "海辺で夕日を眺める猫耳の少女"]
# The same painting parameters as bench/sotai.json, so gateway and Triton figures compare.
PAINT = {"steps": 4, "cfg_scale": 7.0, "width": 512, "height": 512, "num_images": 1}
_seeds = itertools.count(1)


class GatewayUser(HttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        key = os.environ.get("SOTAI_API_KEY")
        if key:
            self.client.headers["Authorization"] = f"Bearer {key}"

    @task(3)
    def images(self) -> None:
        n = next(_seeds)
        body = {"text": SCENES[n % len(SCENES)], "seed": n, **PAINT}
        with self.client.post("/v1/images", json=body, name="/v1/images", catch_response=True) as response:
            if response.status_code != 200 or len(response.json().get("images", [])) != 1:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")

    @task(1)
    def tags(self) -> None:
        n = next(_seeds)
        with self.client.post("/v1/tags", json={"text": SCENES[n % len(SCENES)], "seed": n}, name="/v1/tags",
                              catch_response=True) as response:
            if response.status_code != 200 or not response.json().get("tags"):
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
