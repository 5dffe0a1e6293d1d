"""A real `stormdrain bridge` process under clients that open connections and never finish a request."""

from __future__ import annotations

import json
import select
import socket
import struct
import time

import pytest

from tests.integration.parts import Proc, free_port, post, wait_ready
from tests.timeline import alert, webhook

pytestmark = pytest.mark.integration
CAP, IDLE, REQUEST = 20, 2, 6


@pytest.fixture
def bridge_proc(kafka, tmp_path):
    port = free_port()
    proc = Proc(tmp_path / "bridge.log", "bridge", "--bootstrap", kafka.bootstrap, "--namespace", kafka.namespace,
                "--host", "127.0.0.1", "--port", str(port), "--max-connections", str(CAP),
                "--idle-timeout", str(IDLE), "--request-timeout", str(REQUEST), "--publish-timeout", "5")
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        yield port, proc
    finally:
        proc.stop()


@pytest.fixture
def bridge(bridge_proc):
    return bridge_proc[0]


def _answer(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """What the bridge writes before it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_burst_of_silent_connections_gets_503_past_the_cap_then_is_closed_and_the_bridge_answers_again(bridge):
    burst = [socket.create_connection(("127.0.0.1", bridge)) for _ in range(CAP + 10)]
    try:
        time.sleep(1.0)  # every one accepted; the silent ones wait for the idle timeout
        answered, _, _ = select.select(burst, [], [], 0)
        assert len(answered) == 10
        assert all(_answer(s).startswith(b"HTTP/1.1 503") for s in answered)
        silent = [s for s in burst if s not in answered]
        started = time.monotonic()
        assert all(_answer(s) == b"" for s in silent), "the bridge wrote to a connection that sent nothing"
        assert time.monotonic() - started < IDLE + 5
    finally:
        for s in burst:
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


def test_clients_that_reset_mid_body_or_send_a_bad_request_leave_no_traceback_in_the_log(bridge_proc):
    port, proc = bridge_proc
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port)) as gone:
            gone.sendall(b"POST /alerts HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{")
            time.sleep(0.1)
            gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    with socket.create_connection(("127.0.0.1", port)) as bad:
        bad.sendall(b"POST /alerts HTTP/1.1\r\nHost: bridge\r\nContent-Length: -1\r\n\r\n")
        assert b" 400 Bad Request" in _answer(bad).split(b"\r\n")[0]
    wait_ready(f"http://127.0.0.1:{port}", timeout=10)
    time.sleep(0.5)
    assert "Traceback" not in proc.text()
    assert proc.text().count("refused a malformed HTTP request") == 1


def test_a_port_it_cannot_listen_on_is_one_line_and_exit_2(kafka, tmp_path):
    proc = Proc(tmp_path / "port.log", "bridge", "--bootstrap", kafka.bootstrap, "--port", "70000")
    assert proc.proc.wait(30) == 2
    assert "stormdrain: --port: cannot listen on" in proc.text() and "Traceback" not in proc.text()
