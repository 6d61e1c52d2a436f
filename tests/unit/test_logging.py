import json

import structlog

from shared.runtime.logging import configure_logging


def test_logs_are_json_with_bound_ids_and_no_personal_data(capsys):
    configure_logging("info", json=True)
    structlog.contextvars.bind_contextvars(correlation_id="c-1")
    try:
        structlog.get_logger("t").info(
            "signed_up",
            email="marie.curie@example.fr",
            phone="06 12 34 56 78",
            note="écrire à jean.dupont@example.org ou au +33 6 12 34 56 78",
            department="56",
        )
    finally:
        structlog.contextvars.clear_contextvars()
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["correlation_id"] == "c-1"
    assert line["department"] == "56"
    assert line["email"] == line["phone"] == "[redacted]"
    assert "example.org" not in line["note"] and "12 34" not in line["note"]
    assert line["level"] == "info" and line["event"] == "signed_up"
