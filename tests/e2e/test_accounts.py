"""Accounts over HTTP: register, sign in, who am I."""

from __future__ import annotations

import time
import unicodedata
import uuid

import jwt
import pytest

from tests.support.live_server import auth, register

from .helpers import RFC3339_UTC, assert_problem, problem_type

REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"
ME = "/api/v1/me"


def _email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def _signup(email: str, password: str = "correct horse battery", role: str = "buyer") -> dict[str, str]:
    return {"email": email, "password": password, "display_name": "Ada Lovelace", "role": role}


@pytest.mark.parametrize("role", ["buyer", "seller"])
def test_register_returns_201_with_the_public_user(client, role):
    email = _email()
    r = client.post(REGISTER, json=_signup(email, role=role))
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"id", "email", "display_name", "role", "created_at"}
    assert body["email"] == email
    assert body["display_name"] == "Ada Lovelace"
    assert body["role"] == role
    assert isinstance(body["id"], str) and body["id"]
    assert RFC3339_UTC.match(body["created_at"]), body["created_at"]


def test_duplicate_email_is_409_and_leaves_exactly_the_first_account(client):
    email = _email()
    assert client.post(REGISTER, json=_signup(email, "first password 1")).status_code == 201

    again = client.post(REGISTER, json=_signup(email.upper(), "second password 2", role="seller"))

    assert_problem(again, 409, type_uri=problem_type("email-taken"))
    first = client.post(TOKEN, json={"email": email, "password": "first password 1"})
    assert first.status_code == 200
    me = client.get(ME, headers={"Authorization": f"Bearer {first.json()['access_token']}"}).json()
    assert me["role"] == "buyer"
    second = client.post(TOKEN, json={"email": email, "password": "second password 2"})
    assert_problem(second, 401)


def test_password_shorter_than_10_characters_is_422_naming_password(client):
    r = client.post(REGISTER, json=_signup(_email(), "123456789"))
    body = assert_problem(r, 422, type_uri=problem_type("validation-error"), fields={"password"})
    assert "10" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("password", "why"), [("Password123", "most commonly used"), ("zzzzzzzzzzzz", "one character repeated")]
)
def test_a_common_or_one_character_password_is_422_saying_why(client, password, why):
    email = _email()
    r = client.post(REGISTER, json=_signup(email, password))
    body = assert_problem(r, 422, type_uri=problem_type("validation-error"), fields={"password"})
    assert why in body["errors"][0]["message"]
    assert client.post(TOKEN, json={"email": email, "password": password}).status_code == 401


def test_a_refused_registration_creates_nothing(client):
    email = _email()
    assert client.post(REGISTER, json=_signup(email, "short")).status_code == 422
    assert_problem(client.post(TOKEN, json={"email": email, "password": "short"}), 401)
    assert client.post(REGISTER, json=_signup(email)).status_code == 201


def test_registering_as_admin_is_refused(client):
    email = _email()
    r = client.post(REGISTER, json=_signup(email, role="admin"))
    assert_problem(r, 422, fields={"role"})
    assert_problem(client.post(TOKEN, json={"email": email, "password": "correct horse battery"}), 401)


def test_every_bad_registration_field_is_named_at_once(client):
    r = client.post(
        REGISTER, json={"email": "not-an-email", "password": "short", "display_name": "", "role": "owner"}
    )
    assert_problem(r, 422, fields={"email", "password", "display_name", "role"})


def test_missing_registration_fields_are_each_named(client):
    assert_problem(client.post(REGISTER, json={}), 422, fields={"email", "password", "display_name", "role"})


def test_token_has_the_documented_shape_and_works(client):
    account = register(client)
    r = client.post(TOKEN, json={"email": account["email"], "password": account["password"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    me = client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200


def test_token_email_is_case_insensitive(client):
    account = register(client)
    r = client.post(TOKEN, json={"email": account["email"].upper(), "password": account["password"]})
    assert r.status_code == 200, r.text


def test_wrong_password_and_unknown_email_give_the_same_401(client):
    account = register(client)
    wrong = client.post(TOKEN, json={"email": account["email"], "password": "not the password"})
    unknown = client.post(TOKEN, json={"email": _email(), "password": account["password"]})
    a = assert_problem(wrong, 401)
    b = assert_problem(unknown, 401)
    assert (a["type"], a["title"], a["detail"]) == (b["type"], b["title"], b["detail"])
    assert set(a) == set(b)
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")


def test_a_password_with_an_accent_signs_in_typed_composed_or_decomposed(client):
    composed = unicodedata.normalize("NFC", "mot de passe très secret")
    decomposed = unicodedata.normalize("NFD", composed)
    email = _email()
    assert client.post(REGISTER, json=_signup(email, decomposed)).status_code == 201
    for typed in (composed, decomposed):
        assert client.post(TOKEN, json={"email": email, "password": typed}).status_code == 200


def test_me_returns_the_signed_in_user(client):
    account = register(client, role="seller")
    r = client.get(ME, headers=auth(account))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"id", "email", "display_name", "role", "created_at"}
    assert (body["id"], body["email"], body["role"]) == (account["id"], account["email"], "seller")
    assert RFC3339_UTC.match(body["created_at"])


def test_me_without_a_token_is_401(client):
    assert_problem(client.get(ME), 401, type_uri=problem_type("unauthenticated"))


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer  x.y", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt", "Token abc", "bearer"],
)
def test_me_with_a_malformed_authorization_is_401(client, authorization):
    assert_problem(client.get(ME, headers={"Authorization": authorization}), 401)


def test_me_with_a_tampered_token_is_401(client):
    account = register(client)
    token = account["Authorization"].removeprefix("Bearer ")
    header, payload, signature = token.split(".")
    forged_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b'"buyer"', b'"admin"')
    ).decode()
    for bad in (
        f"{header}.{forged_payload}.{signature}",
        f"{header}.{payload}.{signature[:-2]}{'AA' if not signature.endswith('AA') else 'BB'}",
        jwt.encode({"sub": account["id"], "exp": int(time.time()) + 600, "aud": "market-api"}, "k" * 32),
    ):
        assert_problem(client.get(ME, headers={"Authorization": f"Bearer {bad}"}), 401)


def _server_key(live_server) -> str:
    return (live_server.log.parent / "var" / "secret_key").read_text().strip()


def test_me_with_an_expired_token_is_401(client, live_server):
    account = register(client)
    now = int(time.time())
    claims = {
        "sub": account["id"],
        "role": "buyer",
        "iat": now - 7200,
        "exp": now - 3600,
        "aud": "market-api",
        "ver": 0,
    }
    expired = jwt.encode(claims, _server_key(live_server), algorithm="HS256")
    body = assert_problem(client.get(ME, headers={"Authorization": f"Bearer {expired}"}), 401)
    assert body["type"] == problem_type("unauthenticated")


def test_a_token_signed_with_the_server_key_still_works_until_it_expires(client, live_server):
    """Control for the expired-token test: the same claims, not yet expired, are accepted."""
    account = register(client)
    now = int(time.time())
    claims = {
        "sub": account["id"],
        "role": "buyer",
        "iat": now,
        "exp": now + 600,
        "aud": "market-api",
        "ver": 0,
    }
    token = jwt.encode(claims, _server_key(live_server), algorithm="HS256")
    assert client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_valid_signature_for_an_unknown_user_is_401(client, live_server):
    now = int(time.time())
    claims = {"sub": str(uuid.uuid4()), "role": "admin", "iat": now, "exp": now + 600, "aud": "market-api"}
    token = jwt.encode(claims, _server_key(live_server), algorithm="HS256")
    assert_problem(client.get(ME, headers={"Authorization": f"Bearer {token}"}), 401)


@pytest.mark.parametrize("field", ["email", "display_name"])
def test_nul_characters_in_registration_are_422(client, field):
    body = _signup(_email())
    body[field] = body[field][:3] + "\x00" + body[field][3:]
    assert_problem(client.post(REGISTER, json=body), 422, fields={field})


def test_nul_characters_in_a_sign_in_email_are_refused_without_a_server_error(client):
    r = client.post(TOKEN, json={"email": "a\x00@example.com", "password": "whatever password"})
    assert r.status_code in (401, 422)
    assert_problem(r, r.status_code)


def test_an_email_that_grows_past_254_characters_in_lower_case_is_a_422_on_both_engines(client):
    email = "\u0130" * 60 + "@" + uuid.uuid4().hex[:8] + "a" * 178 + ".com"  # 251 typed, 311 lower-cased
    r = client.post(REGISTER, json=_signup(email))
    assert_problem(r, 422, fields={"email"})
