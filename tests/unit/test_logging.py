import json
import logging

import structlog

from shared.runtime.logging import RepeatFilter, configure_logging


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


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_library_loggers_go_through_the_same_json_with_a_timestamp_and_redaction(capsys):
    configure_logging("info", json=True)
    logging.getLogger("aiokafka.conn").warning("Unable connect to %s for %s", "node 1", "marie.curie@example.fr")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    try:
        raise ConnectionRefusedError("refused")
    except ConnectionRefusedError:
        logging.getLogger("pymongo.topology").exception("Heartbeat failed")
    lines = json_lines(capsys.readouterr().out)
    kafka, uvicorn, pymongo = lines[-3:]
    assert kafka["event"] == "Unable connect to node 1 for [redacted]"
    assert (kafka["level"], kafka["logger"]) == ("warning", "aiokafka.conn")
    assert kafka["timestamp"].endswith("Z")
    assert (uvicorn["event"], uvicorn["level"]) == ("Started server process [42]", "info")
    assert pymongo["level"] == "error" and "ConnectionRefusedError: refused" in pymongo["exception"]


def test_a_library_repeating_itself_is_rate_limited_with_a_count_of_what_was_dropped(capsys):
    configure_logging("info", json=True, repeat_interval_s=10)
    repeat_filter = next(f for h in logging.getLogger().handlers for f in h.filters if isinstance(f, RepeatFilter))
    now = [1000.0]
    repeat_filter.clock = lambda: now[0]
    broker = logging.getLogger("aiokafka.conn")
    for attempt in range(875):  # a second of a broker outage
        broker.error("Unable connect to node with id %s: attempt %s", 1, attempt)
    now[0] += 10
    broker.error("Unable connect to node with id %s: attempt %s", 1, 875)
    structlog.get_logger("civique.test").info("our_own_lines_pass", n=1)
    structlog.get_logger("civique.test").info("our_own_lines_pass", n=2)
    lines = json_lines(capsys.readouterr().out)
    assert [(line["event"], line.get("suppressed")) for line in lines] == [
        ("Unable connect to node with id 1: attempt 0", None),
        ("Unable connect to node with id 1: attempt 875", 874),
        ("our_own_lines_pass", None),
        ("our_own_lines_pass", None),
    ]
