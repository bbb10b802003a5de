def test_live_server_answers_health(client):
    assert client.get("/health/live").json() == {"status": "ok"}
