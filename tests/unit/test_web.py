"""The pure logic of the layout package (shared/web): the session cookie's codec, the form token, forms shown
again after a refusal, redirects after login, security headers, French dates and numbers."""

import base64
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from shared import geo
from shared.events import Actor
from shared.runtime.settings import Settings
from shared.web import csrf, identity
from shared.web.forms import Form, Submitted
from shared.web.gateway import Refused
from shared.web.pages import french_date, french_number, safe_next, security_headers
from shared.web.sessions import MAX_COOKIE_BYTES, Notice, Session, SessionCodec, SignedIn, cookie_attributes

TOKENS = {
    "access_token": "a" * 300,
    "refresh_token": "r" * 43,
    "expires_in": 900,
    "account_id": "acc-1",
    "role": "volunteer",
}


def test_a_session_comes_back_as_it_was_sealed() -> None:
    codec = SessionCodec("secret")
    session = Session(signed_in=SignedIn.of(TOKENS, now=1000.0), notices=[Notice(kind="success", text="Bienvenue !")])
    session.drafts["inscription"] = {"email": "lucie@exemple.fr", "password": "Cerf-volant bleu 2026 !"}
    value = codec.encode(session)
    assert codec.decode(value) == session
    assert len(value) < MAX_COOKIE_BYTES
    assert "Cerf-volant" not in base64.urlsafe_b64decode(value + "==").decode(errors="replace")  # sealed, not encoded
    assert codec.encode(session) != value  # a fresh nonce each time


def test_a_cookie_altered_or_sealed_elsewhere_opens_no_session() -> None:
    codec = SessionCodec("secret")
    value = codec.encode(Session())
    flipped = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
    assert codec.decode(flipped) is None
    assert SessionCodec("another secret").decode(value) is None
    for garbage in ("", None, "not base64 !", "AAAA", "é"):
        assert codec.decode(garbage) is None


def test_an_access_token_is_renewed_just_before_it_ends() -> None:
    signed_in = SignedIn.of(TOKENS, now=1000.0)
    assert signed_in.expires_at == 1900.0
    assert not signed_in.expiring(1800.0)
    assert signed_in.expiring(1871.0)


def test_the_cookie_is_httponly_lax_secure_on_https_and_lasts_with_the_session() -> None:
    anonymous = cookie_attributes(secure=False, signed_in=False, lifetime_s=3600)
    assert anonymous == {"httponly": True, "samesite": "lax", "secure": False, "path": "/"}
    assert cookie_attributes(secure=True, signed_in=True, lifetime_s=3600) == {
        "httponly": True,
        "samesite": "lax",
        "secure": True,
        "path": "/",
        "max_age": 3600,
    }


def test_a_form_without_the_session_token_is_refused() -> None:
    token = csrf.new_token()
    assert csrf.valid(token, token)
    assert not csrf.valid(token, None)
    assert not csrf.valid(token, "")
    assert not csrf.valid(token, token[:-1])
    assert not csrf.valid("", "")
    assert not csrf.valid(token, "é" * len(token))  # compared as bytes: no TypeError on non-ASCII
    assert csrf.new_token() != token


def test_a_submitted_form_is_read_as_the_browser_sent_it() -> None:
    sent = Submitted.parse(b"email=+lucie%40exemple.fr+&domains=a&domains=b&empty=&password=+spaces+")
    assert sent.get("email") == "lucie@exemple.fr"
    assert sent.getlist("domains") == ["a", "b"]
    assert sent.get("empty") == "" and sent.get("missing") == ""
    assert sent.fields["password"] == [" spaces "]  # what get() would strip, a password keeps
    assert Submitted.parse(b"\xff\xfe").fields == {}


def test_a_refusal_of_the_api_goes_next_to_the_fields_and_above_the_form() -> None:
    form = Form({"birth_date": "Date de naissance", "password": "Mot de passe"}, {"birth_date": "2020-01-01"})
    refused = Refused(
        422,
        "invalid_request",
        "Certaines informations sont manquantes ou invalides.",
        {"volunteer.birth_date": "Il faut avoir au moins 16 ans pour s’engager.", "volunteer.unknown": "?"},
    )
    form.refused(refused, lambda name: name.removeprefix("volunteer."))
    assert form.errors == {"birth_date": "Il faut avoir au moins 16 ans pour s’engager."}
    assert form.problem is None and form.value("birth_date") == "2020-01-01"
    weak = Form({"password": "Mot de passe"}).refused(
        Refused(
            422, "weak_password", "Le mot de passe doit compter au moins 10 caractères.", {"password": "trop court"}
        )
    )
    assert weak.errors == {"password": "trop court"} and weak.problem.startswith("Le mot de passe")
    assert not weak.valid


def test_after_login_only_a_path_of_this_site() -> None:
    assert safe_next("/missions/1?x=2") == "/missions/1?x=2"
    for elsewhere in ("https://ailleurs.example", "//ailleurs.example", "/\\ailleurs.example", "", None, "missions"):
        assert safe_next(elsewhere, "/mon-espace") == "/mon-espace"


def test_pages_allow_no_inline_script_or_style() -> None:
    headers = security_headers(Settings(map_tiles_url="https://{s}.tile.example.org/{z}/{x}/{y}.png"))
    policy = dict(part.split(" ", 1) for part in headers["content-security-policy"].split("; "))
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["img-src"] == "'self' data: https://*.tile.example.org"
    assert policy["frame-ancestors"] == "'none'" and headers["x-content-type-options"] == "nosniff"
    assert "https" not in security_headers(Settings(map_tiles_url=""))["content-security-policy"]


def test_dates_and_numbers_read_the_french_way() -> None:
    assert french_date(date(2026, 12, 6)) == "6 décembre 2026"
    assert french_date("2026-08-01") == "1 août 2026"
    assert french_date(datetime(2026, 12, 6, 13, 5, tzinfo=UTC), with_time=True) == "6 décembre 2026 à 14 h 05"
    assert french_date(None) == ""
    assert french_number(12345) == "12\u202f345"
    assert french_number(4.5, 1) == "4,5"


def test_places_are_suggested_and_found_by_name_or_postal_code() -> None:
    assert [c.name for c in geo.suggestions("vann")][:1] == ["Vannes"]
    assert {c.postal_code[:3] for c in geo.suggestions("560")} == {"560"}
    assert geo.place_named("Vannes (56000)").postal_code == "56000"  # type: ignore[union-attr]
    assert geo.place_named("saint-malo").name == "Saint-Malo"  # type: ignore[union-attr]
    assert geo.place_named("Quelque part") is None


def test_our_own_javascript_stays_under_30_kb() -> None:
    scripts = (Path(__file__).parents[2] / "shared" / "web" / "static").glob("*.js")
    assert sum(script.stat().st_size for script in scripts) < 30 * 1024


def test_an_access_token_names_its_actor_only_when_genuine_live_and_with_a_role() -> None:
    secret, moment = "s" * 40, datetime.now(UTC)
    claims = {"sub": "ref-29", "role": "referent", "exp": moment + timedelta(minutes=5)}
    assert identity.actor_of(jwt.encode(claims, secret, algorithm="HS256"), secret) == Actor(
        id="ref-29", role="referent"
    )
    with pytest.raises(identity.TokenExpired):
        identity.actor_of(
            jwt.encode(claims | {"exp": moment - timedelta(minutes=1)}, secret, algorithm="HS256"), secret
        )
    for forged in (
        jwt.encode(claims, "another key of forty characters, at least", algorithm="HS256"),
        jwt.encode(claims | {"role": "superuser"}, secret, algorithm="HS256"),
        jwt.encode({"sub": "ref-29", "exp": claims["exp"]}, secret, algorithm="HS256"),
        "not a token",
    ):
        with pytest.raises(identity.TokenInvalid):
            identity.actor_of(forged, secret)


def test_the_api_client_tells_a_refusal_from_a_failure() -> None:
    import httpx

    from shared.web.gateway import Unavailable, expect

    refusal = httpx.Response(409, json={"code": "already_applied", "detail": "Déjà candidat.", "fields": {"a": "b"}})
    with pytest.raises(Refused) as refused:
        expect(refusal)
    assert (refused.value.status, refused.value.code, refused.value.fields) == (409, "already_applied", {"a": "b"})
    with pytest.raises(Unavailable) as failed:  # never caught by a page as a person's mistake
        expect(httpx.Response(503, json={"code": "intake_unavailable", "detail": "Réessayez."}))
    assert (failed.value.status, failed.value.code) == (503, "intake_unavailable")
    assert not isinstance(failed.value, Refused)
    assert expect(httpx.Response(202), 200, 202).status_code == 202
