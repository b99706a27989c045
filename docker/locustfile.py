"""Load for the flask service of docker-compose.yml, from Locust's own master and workers.

Closed loop: each user sends ``POST /predict`` with one of the digits bundle's 64 example
requests (``{"inputs": [[64 floats]]}``, as the README's Flask API describes) as soon as
the previous one is answered; an answer without predictions counts as a failure. This is
plain Locust for bringing the comparison up by hand: `deploybench run` uses its own users
and listener (scenarios/users/), which record every request's latency.
"""

from __future__ import annotations

import json
import random

from locust import FastHttpUser, constant, task

from targets.bundle import get_bundle

#: The same requests the harness sends (the bundle's held-out examples; no torch needed).
BODIES = [json.dumps({"inputs": example.tolist()}).encode()
          for example in get_bundle("digits").example_requests()]
HEADERS = {"Content-Type": "application/json"}


class PredictUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def predict(self) -> None:
        with self.client.post("/predict", data=random.choice(BODIES), headers=HEADERS,
                              catch_response=True) as response:
            if response.status_code == 200 and b'"predictions"' not in (response.content or b""):
                response.failure("200 without predictions")
