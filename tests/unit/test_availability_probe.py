"""The synthetic availability probe: what it counts as success and failure, what it records, the address it
requests by default, and its settings."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry.sdk.resources import Resource

from market.adapters.telemetry.probe import AvailabilityProbe, probe_timeout
from market.config import ConfigError, Settings
from market.telemetry.metrics import Instruments, SharedMetricReader, build_meter_provider
from market.telemetry.prometheus import render, snapshot

URL = "http://market.test/health/ready"


def instruments() -> tuple[Instruments, SharedMetricReader]:
    reader = SharedMetricReader()
    provider = build_meter_provider(Resource.create({}), reader)
    return Instruments.create(provider.get_meter("test")), reader


def probe_with(answer, recorded: Instruments) -> AvailabilityProbe:
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    ticks = iter([10.0, 10.25, 20.0, 20.5, 30.0, 30.125, 40.0, 40.0])
    return AvailabilityProbe(URL, 15, recorded, client=client, timer=lambda: next(ticks))


def exposition(reader: SharedMetricReader) -> str:
    return render(snapshot(reader.get_metrics_data()))


def test_a_2xx_is_success_anything_else_is_failure_and_each_is_recorded() -> None:
    answers = iter(
        [httpx.Response(200), httpx.Response(503), httpx.Response(302, headers={"location": "/elsewhere"})]
    )
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        assert request.headers["user-agent"].startswith("market-availability-probe/")
        try:
            return next(answers)
        except StopIteration:
            raise httpx.ConnectError("refused", request=request) from None

    recorded, reader = instruments()
    probe = probe_with(answer, recorded)
    results = [asyncio.run(probe.probe_once()) for _ in range(4)]
    assert results == [True, False, False, False]  # 200; 503; a redirect is not followed; refused
    assert seen == [URL] * 4
    text = exposition(reader)
    assert 'market_probe_checks_total{market_probe_outcome="success"} 1.0' in text
    assert 'market_probe_checks_total{market_probe_outcome="failure"} 3.0' in text
    assert "market_probe_success 0.0" in text  # the newest probe failed
    assert 'market_probe_duration_seconds_count{market_probe_outcome="success"} 1.0' in text
    assert 'market_probe_duration_seconds_sum{market_probe_outcome="success"} 0.25' in text
    assert 'market_probe_duration_seconds_count{market_probe_outcome="failure"} 3.0' in text


def test_both_outcomes_exist_at_zero_before_the_first_probe() -> None:
    """The first failure then moves increase() instead of appearing at 1."""
    _, reader = instruments()
    text = exposition(reader)
    assert 'market_probe_checks_total{market_probe_outcome="success"} 0.0' in text
    assert 'market_probe_checks_total{market_probe_outcome="failure"} 0.0' in text


def test_the_success_gauge_follows_the_newest_probe() -> None:
    answers = iter([httpx.Response(503), httpx.Response(204)])
    recorded, reader = instruments()
    probe = probe_with(lambda request: next(answers), recorded)
    asyncio.run(probe.probe_once())
    assert "market_probe_success 0.0" in exposition(reader)
    asyncio.run(probe.probe_once())
    assert "market_probe_success 1.0" in exposition(reader)


def test_a_probe_never_outlives_its_interval_nor_5_s() -> None:
    assert probe_timeout(1) == 1
    assert probe_timeout(15) == 5


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "http://127.0.0.1:8000/health/ready"),
        ({"MARKET_HOST": "0.0.0.0", "MARKET_PORT": "9000"}, "http://127.0.0.1:9000/health/ready"),
        ({"MARKET_HOST": "::"}, "http://[::1]:8000/health/ready"),
        (
            {"MARKET_PROBE_URL": "https://market.example.com/health/ready"},
            "https://market.example.com/health/ready",
        ),
    ],
)
def test_the_probe_requests_the_bind_address_unless_told_otherwise(environ, expected) -> None:
    assert Settings.from_env(environ, dotenv=None).probe_url == expected


def test_probe_settings() -> None:
    settings = Settings.from_env({}, dotenv=None)
    assert settings.probe.interval_s == 15
    assert Settings.from_env({"MARKET_PROBE_INTERVAL": "0"}, dotenv=None).probe.interval_s == 0
    assert Settings.from_env({"MARKET_PROBE_INTERVAL": "1m"}, dotenv=None).probe.interval_s == 60
    with pytest.raises(ConfigError, match="MARKET_PROBE_URL"):
        Settings.from_env({"MARKET_PROBE_URL": "ftp://x/"}, dotenv=None)
    with pytest.raises(ConfigError, match="MARKET_PROBE_INTERVAL"):
        Settings.from_env({"MARKET_PROBE_INTERVAL": "soon"}, dotenv=None)
