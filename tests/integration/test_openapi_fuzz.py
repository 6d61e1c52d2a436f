"""Schemathesis over the gateway's OpenAPI, the whole platform running as a process behind it:
no generated request, however wrong, is answered with a 5xx."""

import subprocess
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from tests.conftest import NO_RATE_LIMITS, POLL_INTERVAL, free_port
from tests.integration.test_services_as_processes import start


@pytest.fixture
def api(settings):
    settings = settings.model_copy(update=NO_RATE_LIMITS)
    port = free_port()
    platform = start("services", settings, port)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and platform.poll() is None, "the platform did not start"
        time.sleep(POLL_INTERVAL)
    yield schemathesis.openapi.from_url(f"{url}/openapi.json").include(path_regex="^/api/v1/")
    platform.terminate()
    try:
        platform.wait(timeout=30)
    except subprocess.TimeoutExpired:
        platform.kill()


def test_no_request_is_answered_with_a_5xx(api):
    failures: list[str] = []
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case) -> None:
            response = case.call(timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        call()
    assert operations >= 30
    assert failures == []
