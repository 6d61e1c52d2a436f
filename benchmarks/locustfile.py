"""Load for benchmarks/spike.py: volunteers signing up at once, or the bare endpoint it is compared with."""

import os
import uuid

from locust import FastHttpUser, constant, task

TARGET = os.environ.get("SPIKE_TARGET", "signup")
PASSWORD = "Cerf-volant bleu 2026 !"


class Visitor(FastHttpUser):
    wait_time = constant(0)

    @task
    def act(self) -> None:
        if TARGET == "bare":
            self.client.get("/hello", name="bare")
            return
        email = f"spike-{uuid.uuid4().hex}@exemple.fr"
        volunteer = {
            "first_name": "Camille",
            "last_name": "Spike",
            "email": email,
            "phone": "06 12 34 56 78",
            "birth_date": "1990-05-04",
            "postal_code": "56000",
            "domains": ["keeping_in_touch"],
            "availability": ["evenings"],
        }
        with self.client.post(
            "/api/v1/volunteers",
            json={"password": PASSWORD, "volunteer": volunteer},
            name="sign-up",
            catch_response=True,
        ) as response:
            if response.status_code != 202:
                response.failure(f"status {response.status_code}")
