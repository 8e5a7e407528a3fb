"""The gateway part of `sotai bench load` (locust, headless): exactly SOTAI_LOAD_REQUESTS requests to
`POST /v1/images`, then the run stops. Each user sends its next request as soon as the last answered
(closed loop, like perf_analyzer's concurrency). Not a module of the library: locust loads it by path.

Environment: SOTAI_LOAD_REQUESTS (count), SOTAI_LOAD_BODY (JSON painting parameters),
SOTAI_LOAD_SCENES (JSON list of texts, used in turn), SOTAI_API_KEY (sent as a bearer token if set).
"""

from __future__ import annotations

import itertools
import json
import os

import gevent
from locust import HttpUser, constant, task
from locust.exception import StopUser

LIMIT = int(os.environ.get("SOTAI_LOAD_REQUESTS", "1000"))
BODY = json.loads(os.environ.get("SOTAI_LOAD_BODY", '{"steps": 1, "width": 512, "height": 512}'))
SCENES = json.loads(os.environ.get("SOTAI_LOAD_SCENES", '["銀髪の少女が夜の桜の下で微笑んでいる"]'))
_sent = itertools.count()
_answered = itertools.count(1)


class LoadUser(HttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        key = os.environ.get("SOTAI_API_KEY")
        if key:
            self.client.headers["Authorization"] = f"Bearer {key}"

    @task
    def images(self) -> None:
        n = next(_sent)
        if n >= LIMIT:
            raise StopUser()
        body = {"text": SCENES[n % len(SCENES)], "seed": n % len(SCENES) + 1, **BODY}
        with self.client.post("/v1/images", json=body, name="/v1/images", catch_response=True) as response:
            if response.status_code != 200 or len(response.json().get("images", [])) != body.get("num_images", 1):
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
        if next(_answered) >= LIMIT:
            # every request is answered and recorded; quit from outside this user's greenlet, once the
            # stats have seen the last one
            gevent.spawn_later(0.5, self.environment.runner.quit)
