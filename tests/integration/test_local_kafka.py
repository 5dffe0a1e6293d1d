"""deploy/local/kafka.py starting a real broker when the port it picked is taken before the JVM binds it."""

from __future__ import annotations

import socket

import pytest


pytestmark = pytest.mark.integration


def test_a_broker_that_dies_on_a_port_taken_after_the_check_is_started_again_on_another(
        local_kafka, broker, tmp_path, monkeypatch):
    taken = socket.socket()
    taken.bind((local_kafka.HOST, 0))
    taken.listen()
    port = taken.getsockname()[1]
    picks = iter([port])
    free, in_use = local_kafka._free_port, local_kafka._port_in_use
    monkeypatch.setattr(local_kafka, "_free_port", lambda: next(picks, None) or free())
    monkeypatch.setattr(local_kafka, "_port_in_use", lambda p: p != port and in_use(p))
    try:
        bootstrap = local_kafka.start(port=0, data_dir=tmp_path)
        assert int(bootstrap.rsplit(":", 1)[1]) != port
        assert local_kafka.status(tmp_path)["ready"]
        assert "Address already in use" in (tmp_path / "logs" / "server.log").read_text()
    finally:
        taken.close()
        local_kafka.stop(tmp_path)


def test_a_picked_port_is_below_the_ephemeral_range_and_free(local_kafka):
    port = local_kafka._free_port()
    assert 10_000 <= port < local_kafka._ephemeral_low()
    with socket.socket() as s:
        s.bind((local_kafka.HOST, port))
