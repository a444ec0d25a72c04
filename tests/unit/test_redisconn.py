"""Reading REDIS_URL: plain, TLS and Sentinel URLs, for redis-py and for Celery's broker."""

from __future__ import annotations

import ssl

import pytest

from config.redisconn import _sentinels, celery_broker, connect


def test_a_sentinel_url_names_every_sentinel_and_the_masters_password_and_db():
    url = "sentinel://:pw@10.0.0.1:26379/2;sentinel://10.0.0.2:26380;sentinel://10.0.0.3"
    hosts, options = _sentinels(url)
    assert hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)]
    assert options == {"password": "pw", "db": 2}
    assert celery_broker(url, "prod") == {
        "broker_url": url,
        "broker_transport_options": {"master_name": "prod"},
    }


def test_a_sentinel_url_must_be_all_sentinels():
    with pytest.raises(ValueError, match="not a sentinel"):
        _sentinels("sentinel://a:26379;redis://b:6379")


def test_tls_urls_check_certificates_unless_told_not_to():
    url = "rediss://:pw@redis.example:6380/0?ssl_ca_certs=/etc/ca.pem"
    assert celery_broker(url)["broker_use_ssl"] == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/etc/ca.pem",
    }
    relaxed = celery_broker("rediss://redis.example:6380/0?ssl_cert_reqs=CERT_NONE")
    assert relaxed["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_NONE}


def test_a_plain_url_is_passed_as_it_is():
    assert celery_broker("redis://h:6379/1") == {"broker_url": "redis://h:6379/1"}
    client = connect("redis://:pw@h:6379/1", blocking=4, timeout=1)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["db"], kwargs["password"]) == ("h", 1, "pw")
    assert client.connection_pool.max_connections == 4
