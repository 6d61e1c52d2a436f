"""Load for benchmarks/spike.py: volunteers signing up at once, or the bare endpoint it is compared with."""

import itertools
import json
import os
import uuid

from locust import FastHttpUser, constant, task

TARGET = os.environ.get("SPIKE_TARGET", "signup")
PASSWORD = "Cerf-volant bleu 2026 !"
RUN = uuid.uuid4().hex[:12]  # e-mails unique across runs, and within one by a counter
SEQUENCE = itertools.count()
# serialised once: locust shares the 2 cores with the servers, so each request costs it no more than the bare one
BODY = json.dumps(
    {
        "password": PASSWORD,
        "volunteer": {
            "first_name": "Camille",
            "last_name": "Spike",
            "email": "{email}",
            "phone": "06 12 34 56 78",
            "birth_date": "1990-05-04",
            "postal_code": "56000",
            "domains": ["keeping_in_touch"],
            "availability": ["evenings"],
        },
    }
)
JSON = {"content-type": "application/json"}


class Visitor(FastHttpUser):
    wait_time = constant(0)

    @task
    def act(self) -> None:
        if TARGET == "bare":
            self.client.get("/hello", name="bare")
            return
        body = BODY.replace("{email}", f"spike-{RUN}-{next(SEQUENCE)}@exemple.fr").encode()
        # as plain as the bare request: locust fails any answer >= 400, and the route answers 202 or a problem
        self.client.post("/api/v1/volunteers", data=body, headers=JSON, name="sign-up")
