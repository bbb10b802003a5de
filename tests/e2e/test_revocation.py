"""Revoking tokens over HTTP: sign out everywhere, change the password, and the operators' `market users`
disable / enable / set-password / list against the running server."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.live_server import LiveServer, auth, register

from .helpers import assert_problem, problem_type, run_market

ME = "/api/v1/me"
TOKEN = "/api/v1/auth/token"
LOGOUT = "/api/v1/auth/logout"
PASSWORD = "/api/v1/me/password"
NEW_PASSWORD = "a completely new password"


def _sign_in(client: httpx.Client, email: str, password: str) -> httpx.Response:
    return client.post(TOKEN, json={"email": email, "password": password})


def _bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _rejected_like_an_expired_token(client: httpx.Client, headers: dict[str, str]) -> None:
    """401 with the very problem a forged or expired token gets: a revoked token reveals nothing more."""
    revoked = assert_problem(client.get(ME, headers=headers), 401, type_uri=problem_type("unauthenticated"))
    garbage = client.get(ME, headers={"Authorization": "Bearer not.a.token"}).json()
    assert (revoked["title"], revoked["detail"]) == (garbage["title"], garbage["detail"])


def _same_problem(a: httpx.Response, b: httpx.Response) -> None:
    first, second = assert_problem(a, 401), assert_problem(b, 401)
    assert (first["type"], first["title"], first["detail"]) == (
        second["type"],
        second["title"],
        second["detail"],
    )


# --- sign out everywhere -------------------------------------------------------------------------------------


def test_after_logout_every_token_issued_so_far_is_401_and_signing_in_again_works(client):
    account = register(client)
    other_device = _bearer(_sign_in(client, account["email"], account["password"]))

    r = client.post(LOGOUT, headers=auth(account))

    assert r.status_code == 204, r.text
    assert r.content == b""
    _rejected_like_an_expired_token(client, auth(account))
    _rejected_like_an_expired_token(client, other_device)
    fresh = _bearer(_sign_in(client, account["email"], account["password"]))
    assert client.get(ME, headers=fresh).json()["id"] == account["id"]


def test_logout_signs_out_only_the_caller(client):
    caller, bystander = register(client), register(client)
    assert client.post(LOGOUT, headers=auth(caller)).status_code == 204
    assert client.get(ME, headers=auth(bystander)).status_code == 200


def test_logout_without_a_token_is_a_401_problem(client):
    assert_problem(client.post(LOGOUT), 401, type_uri=problem_type("unauthenticated"))


# --- change password -----------------------------------------------------------------------------------------


def test_changing_the_password_revokes_old_tokens_and_only_the_new_password_signs_in(client):
    account = register(client)
    other_device = _bearer(_sign_in(client, account["email"], account["password"]))

    r = client.post(
        PASSWORD,
        json={"current_password": account["password"], "new_password": NEW_PASSWORD},
        headers=auth(account),
    )

    assert r.status_code == 204, r.text
    _rejected_like_an_expired_token(client, auth(account))
    _rejected_like_an_expired_token(client, other_device)
    assert_problem(_sign_in(client, account["email"], account["password"]), 401)
    fresh = _bearer(_sign_in(client, account["email"], NEW_PASSWORD))
    assert client.get(ME, headers=fresh).json()["id"] == account["id"]


def test_a_wrong_current_password_is_a_401_problem_and_changes_nothing(client):
    account = register(client)
    r = client.post(
        PASSWORD,
        json={"current_password": "not my password at all", "new_password": NEW_PASSWORD},
        headers=auth(account),
    )
    assert_problem(r, 401, type_uri=problem_type("wrong-password"))
    assert client.get(ME, headers=auth(account)).status_code == 200
    assert _sign_in(client, account["email"], account["password"]).status_code == 200
    assert_problem(_sign_in(client, account["email"], NEW_PASSWORD), 401)


def test_a_new_password_breaking_the_rules_is_422_naming_new_password_and_changes_nothing(client):
    account = register(client)
    r = client.post(
        PASSWORD,
        json={"current_password": account["password"], "new_password": "short"},
        headers=auth(account),
    )
    assert_problem(r, 422, fields={"new_password"})
    assert client.get(ME, headers=auth(account)).status_code == 200


def test_a_new_password_equal_to_the_current_one_is_422_naming_new_password_and_changes_nothing(client):
    account = register(client)
    r = client.post(
        PASSWORD,
        json={"current_password": account["password"], "new_password": account["password"]},
        headers=auth(account),
    )
    body = assert_problem(r, 422, type_uri=problem_type("validation-error"), fields={"new_password"})
    assert "differ" in body["errors"][0]["message"]
    assert client.get(ME, headers=auth(account)).status_code == 200


def test_bad_password_change_bodies_are_4xx_problems(client):
    account = register(client)
    for body in ({}, {"current_password": account["password"]}, {"current_password": 1, "new_password": 2}):
        r = client.post(PASSWORD, json=body, headers=auth(account))
        assert 400 <= r.status_code < 500
        assert_problem(r, r.status_code)
    r = client.post(
        PASSWORD, content=b"{not json", headers={**auth(account), "content-type": "application/json"}
    )
    assert_problem(r, 400)
    assert client.get(ME, headers=auth(account)).status_code == 200


def test_of_concurrent_password_changes_with_one_token_only_the_first_succeeds(client, live_server):
    """The first change revokes the token the others were sent with (and their current password is no longer
    the account's): they are 401 like any dead token, and only the winner's new password signs in."""
    account = register(client)
    racers = 6
    start = threading.Barrier(racers)

    def change(i: int) -> httpx.Response:
        with live_server.client() as own:  # a connection each, so that the server runs them side by side
            start.wait()
            return own.post(
                PASSWORD,
                json={"current_password": account["password"], "new_password": f"{NEW_PASSWORD} {i}"},
                headers=auth(account),
            )

    with ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(change, range(racers)))

    statuses = [r.status_code for r in answers]
    assert sorted(statuses) == [204] + [401] * (racers - 1), statuses
    for loser in (r for r in answers if r.status_code == 401):
        assert_problem(loser, 401, type_uri=problem_type("unauthenticated"))
    winner = statuses.index(204)
    for i in range(racers):
        signed_in = _sign_in(client, account["email"], f"{NEW_PASSWORD} {i}")
        assert signed_in.status_code == (200 if i == winner else 401), (i, winner, signed_in.text)
    assert_problem(_sign_in(client, account["email"], account["password"]), 401)
    _rejected_like_an_expired_token(client, auth(account))


def test_changing_the_password_needs_a_token(client):
    r = client.post(PASSWORD, json={"current_password": "whatever it is", "new_password": NEW_PASSWORD})
    assert_problem(r, 401, type_uri=problem_type("unauthenticated"))


def test_both_operations_are_documented_with_their_problems(client):
    paths = client.get("/schema/openapi.json").json()["paths"]
    logout, change = paths[LOGOUT]["post"], paths[PASSWORD]["post"]
    assert "204" in logout["responses"] and "401" in logout["responses"]
    assert {"204", "401", "422"} <= set(change["responses"])
    for status in ("401", "422"):
        assert "application/problem+json" in change["responses"][status]["content"]


# --- the operators' commands against the running server ---------------------------------------------------


def _account_status(server: LiveServer, email: str) -> dict[str, object]:
    listed = json.loads(run_market(server, "users", "list", "--json"))
    return next(entry for entry in listed if entry["email"] == email)


def test_disabling_an_account_revokes_its_live_token_at_once_and_enabling_lets_it_sign_in_again(
    client, live_server
):
    account = register(client)
    assert client.get(ME, headers=auth(account)).status_code == 200

    run_market(live_server, "users", "disable", "--email", account["email"])

    _rejected_like_an_expired_token(client, auth(account))
    disabled = _sign_in(client, account["email"], account["password"])
    wrong_password = _sign_in(client, account["email"], "not the password at all")
    _same_problem(disabled, wrong_password)
    assert _account_status(live_server, account["email"])["status"] == "disabled"

    run_market(live_server, "users", "enable", "--email", account["email"])

    assert _account_status(live_server, account["email"])["status"] == "active"
    _rejected_like_an_expired_token(client, auth(account))  # enabling does not revive old tokens
    fresh = _bearer(_sign_in(client, account["email"], account["password"]))
    assert client.get(ME, headers=fresh).json()["id"] == account["id"]


def test_set_password_from_stdin_revokes_tokens_and_the_new_password_signs_in(client, live_server):
    account = register(client)

    run_market(live_server, "users", "set-password", "--email", account["email"], stdin=NEW_PASSWORD + "\n")

    _rejected_like_an_expired_token(client, auth(account))
    assert_problem(_sign_in(client, account["email"], account["password"]), 401)
    assert _sign_in(client, account["email"], NEW_PASSWORD).status_code == 200


def test_users_list_shows_each_account_with_its_status_and_latest_sign_in(client, live_server):
    account = register(client, role="seller")  # registering signs in once
    entry = _account_status(live_server, account["email"])
    assert entry["id"] == account["id"]
    assert (entry["role"], entry["status"]) == ("seller", "active")
    assert entry["last_login_at"] is not None
    assert "password" not in json.dumps(entry) and "hash" not in json.dumps(entry)
    table = run_market(live_server, "users", "list")
    assert account["email"] in table and account["id"] in table
