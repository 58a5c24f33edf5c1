"""Prometheus metrics across two real workers, and JSON logs from a real worker."""

import asyncio
import json
import re
import signal

import pytest

from tests.system.conftest import http_client, user_register
from tests.system.wsclient import session_open, until_closed, ws_connect


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text; 0 when absent."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def scrape(worker) -> str:
    with http_client(worker) as client:
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


async def test_metrics_sum_both_workers_and_forget_a_killed_one(start_worker, tmp_path):
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")}
    (tmp_path / "prometheus").mkdir()
    worker1, worker2 = start_worker(**shared), start_worker(**shared)
    user = user_register(worker1)
    open_sessions = {"endpoint": "session"}

    async with session_open(worker1, user["access"]), session_open(worker2, user["access"]):
        async with ws_connect(worker2, "/ws/session/?token=not-a-token") as refused:
            await until_closed(refused)
        text = scrape(worker1)
        assert metric(text, "switchboard_ws_connections_open", **open_sessions) == 2
        assert (
            metric(text, "switchboard_ws_connections_total", endpoint="session", outcome="accepted")
            == 2
        )
        assert (
            metric(
                text, "switchboard_ws_connections_total", endpoint="session", outcome="unauthorized"
            )
            == 1
        )
        assert metric(text, "switchboard_ws_closes_total", endpoint="session", code="4500") == 1
        assert metric(text, "switchboard_logins_total", outcome="success") >= 1

        worker2.stop(signal.SIGKILL)  # no chance to clean up after itself
        text = scrape(worker1)
        assert metric(text, "switchboard_ws_connections_open", **open_sessions) == 1
        # Counters keep what the dead worker counted: totals never go backwards.
        assert (
            metric(text, "switchboard_ws_connections_total", endpoint="session", outcome="accepted")
            == 2
        )


@pytest.mark.parametrize("debug", ["0", "1"])
async def test_json_logs_are_one_object_per_line_with_session_context(start_worker, debug):
    worker = start_worker(LOG_FORMAT="json", DJANGO_DEBUG=debug)
    user = user_register(worker)
    async with session_open(worker, user["access"]) as (session, welcome):
        await session.send(b"\x00binary")
        closed = await until_closed(session)
    assert closed.code == 1003
    await asyncio.sleep(0.2)
    records = [json.loads(line) for line in worker.log_text().splitlines() if line.strip()]
    event = next(r for r in records if r["event"].startswith("binary frame, closing 1003"))
    assert event["level"] == "WARNING"
    assert event["logger"] == "switchboard.security"
    assert event["session_id"] == welcome["session_id"]
    assert event["user_id"] == user["id"]
    assert event["client_ip"] == "127.0.0.1"
    assert event["worker"].endswith(f":{worker.proc.pid}")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*", event["timestamp"])
