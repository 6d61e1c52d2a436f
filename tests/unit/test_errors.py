"""Refusals of the domain: raised as fresh copies of their constants, mapped to statuses in one place."""

from shared.errors import Conflict, Forbidden, Gone, Invalid, LimitReached, NotFound, Unauthenticated
from shared.runtime.errors import status_of


def test_a_refusal_raised_again_and_again_keeps_no_frames():
    """Raising a module constant would chain every raise's traceback onto it, alive for good."""
    full = Conflict("mission_full", "Cette mission est complète.")
    for _ in range(3):
        try:
            raise full()
        except Conflict as raised:
            assert raised is not full and raised.code == "mission_full"
    assert full.__traceback__ is None


def test_each_kind_of_refusal_has_its_status():
    kinds = [Invalid, NotFound, Forbidden, Conflict, Gone, LimitReached, Unauthenticated]
    assert [status_of(kind("code", "message")) for kind in kinds] == [422, 404, 403, 409, 410, 429, 401]
    assert Invalid("a", "b").with_fields({"x": "y"}).fields == {"x": "y"}
