def test_health_needs_nothing_but_the_process(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_ready_is_503_when_redis_does_not_answer(client):
    response = client.get("/ready")  # the test app's Redis is on a port nobody listens on
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"
