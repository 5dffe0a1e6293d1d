"""A real `stormdrain bridge` process under clients that open connections and never finish a request."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.integration.parts import Proc, free_port, post, wait_ready
from tests.timeline import alert, webhook

pytestmark = pytest.mark.integration
CAP, IDLE, REQUEST = 20, 2, 6


@pytest.fixture
def bridge(kafka, tmp_path):
    port = free_port()
    proc = Proc(tmp_path / "bridge.log", "bridge", "--bootstrap", kafka.bootstrap, "--namespace", kafka.namespace,
                "--host", "127.0.0.1", "--port", str(port), "--max-connections", str(CAP),
                "--idle-timeout", str(IDLE), "--request-timeout", str(REQUEST), "--publish-timeout", "5")
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        yield port
    finally:
        proc.stop()


def _answer(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """What the bridge writes before it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_silent_connections_fill_the_cap_then_are_closed_and_the_bridge_answers_again(bridge):
    silent = [socket.create_connection(("127.0.0.1", bridge)) for _ in range(CAP)]
    try:
        time.sleep(0.3)  # every one accepted
        with socket.create_connection(("127.0.0.1", bridge)) as one_more:
            one_more.sendall(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
            refused = _answer(one_more)
        assert refused.startswith(b"HTTP/1.1 503") and b"Retry-After: 5" in refused
        started = time.monotonic()
        assert all(_answer(s) == b"" for s in silent), "the bridge wrote to a connection that sent nothing"
        assert time.monotonic() - started < IDLE + 5
    finally:
        for s in silent:
            s.close()
    wait_ready(f"http://127.0.0.1:{bridge}", timeout=10)


def test_a_body_sent_too_slowly_gets_503_and_a_whole_webhook_still_goes_through(bridge):
    with socket.create_connection(("127.0.0.1", bridge)) as slow:
        slow.sendall(b"POST /alerts HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"version\"")
        started = time.monotonic()
        answer = _answer(slow, timeout=REQUEST + 10)
    assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 5" in answer
    assert REQUEST - 1 < time.monotonic() - started < REQUEST + 5
    status, _, body = post(f"http://127.0.0.1:{bridge}/alerts", json.dumps(webhook(alert("PoolExhausted", "orders"))).encode())
    assert (status, json.loads(body)["alerts"]) == (200, 1)


def test_a_request_timeout_not_above_the_publish_timeout_is_refused_before_listening(kafka, tmp_path):
    proc = Proc(tmp_path / "bad.log", "bridge", "--bootstrap", kafka.bootstrap, "--request-timeout", "5",
                "--publish-timeout", "5", "--port", str(free_port()))
    assert proc.proc.wait(30) == 2
    assert "--request-timeout" in proc.text() and "--publish-timeout" in proc.text()
