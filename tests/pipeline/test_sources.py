"""History sources: time ranges, the republish guard, and ALERTS samples back into alert lives.

Prometheus's answers come from a local server that speaks the query API, so
malformed, hostile and failing answers can be served on purpose.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import pytest
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from pipeline import sources_prometheus
from pipeline.alerts import InputError
from pipeline.sources import check_republish, time_range
from pipeline.sources_prometheus import episodes, read_alert_history

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
T = NOW.timestamp() - 3600
LABELS = {"alertname": "HighLatency", "service": "web"}


@pytest.mark.parametrize("since, until, start, end", [
    ("7d", None, NOW - timedelta(days=7), NOW),
    ("2h", "30m", NOW - timedelta(hours=2), NOW - timedelta(minutes=30)),
    ("2025-05-01T00:00:00Z", "2025-05-02T00:00:00+02:00", datetime(2025, 5, 1, tzinfo=timezone.utc),
     datetime(2025, 5, 1, 22, tzinfo=timezone.utc)),
])
def test_a_time_range_is_durations_back_from_now_or_times(since, until, start, end):
    assert time_range(since, until, NOW) == (start, end)


@pytest.mark.parametrize("since, until, message", [
    (None, None, "needs a start"),
    ("yesterday", None, "not a duration"),
    ("1h", "2h", "time range is empty"),
    ("0001-01-01T00:00:00Z", None, "zero time"),
    ("999999999d", None, "at most 3650d"),
])
def test_a_bad_time_range_says_why(since, until, message):
    with pytest.raises(InputError, match=message):
        time_range(since, until, NOW)


@pytest.mark.parametrize("topic", ["stormdrain.diagnoses", "diagnoses", "stormdrain.alerts.raw", "incidents",
                                   "stormdrain.correlate.scopes", "bad topic!", "x" * 300])
def test_republishing_into_a_live_topic_or_a_bad_name_is_refused(topic):
    with pytest.raises(InputError):
        check_republish(topic)


def test_a_topic_of_its_own_may_take_a_republished_replay():
    check_republish("whatif.diagnoses")


# -- ALERTS samples to lives ---------------------------------------------------


def _times(*offsets: float) -> list[float]:
    return [T + o for o in offsets]


def test_contiguous_samples_are_one_life_ending_one_interval_after_the_last():
    [life] = episodes(LABELS, _times(0, 15, 30, 45), {}, 15.0, NOW)
    assert (life.starts_at.timestamp(), life.ends_at.timestamp()) == (T, T + 60)


def test_a_life_still_sampled_when_the_range_ends_has_no_end():
    end = datetime.fromtimestamp(T + 50, timezone.utc)
    [life] = episodes(LABELS, _times(0, 15, 30, 45), {}, 15.0, end)
    assert life.ends_at is None


def test_a_gap_starts_a_new_life_but_a_missed_evaluation_with_the_same_active_time_does_not():
    two = episodes(LABELS, _times(0, 15, 45, 60), {}, 15.0, NOW)
    assert [l.starts_at.timestamp() for l in two] == [T, T + 45]
    same = {t: T - 60 for t in _times(0, 15, 45, 60)}  # evaluation at 30 missed, still the same alert
    assert len(episodes(LABELS, _times(0, 15, 45, 60), same, 15.0, NOW)) == 1
    new = {**same, T + 45: T + 40, T + 60: T + 40}  # active again from 40: a new life
    assert len(episodes(LABELS, _times(0, 15, 45, 60), new, 15.0, NOW)) == 2


class FakePrometheus:
    """A local server speaking Prometheus's query API, answering whatever a test sets."""

    def __init__(self):
        self.firing: object = []
        self.active: object = []
        self.status = 200
        self.raw: bytes | None = None
        self.queries: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlparse(self.path)
                outer.queries.append({"path": url.path, **{k: v[0] for k, v in parse_qs(url.query).items()}})
                self._answer(outer.answer(url.path, parse_qs(url.query).get("query", [""])[0]))

            def _answer(self, body: bytes):
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, query: str) -> bytes:
        if self.raw is not None:
            return self.raw
        if path == "/api/v1/rules":
            data = {"groups": [{"interval": 15, "rules": [{"name": "HighLatency"}]}]}
        elif path == "/api/v1/status/config":
            data = {"yaml": "global:\n  external_labels: {cluster: eu-1}\n"}
        else:
            data = {"resultType": "matrix", "result": self.active if query.startswith("ALERTS_FOR") else self.firing}
        return json.dumps({"status": "success", "data": data}).encode()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus():
    server = FakePrometheus()
    yield server
    server.close()


def _read(server: FakePrometheus, hours: float = 2):
    client = PrometheusConnect(server.url, timeout=5, retry=Retry(total=0, raise_on_status=False))
    return read_alert_history(client, NOW - timedelta(hours=hours), NOW, timedelta(hours=1))


def _series(labels: dict, times: list[float], value: str = "1") -> dict:
    return {"metric": {"__name__": "ALERTS", "alertstate": "firing", **labels}, "values": [[t, value] for t in times]}


def test_alerts_are_read_in_chunks_with_external_labels_and_overlapping_samples_once(prometheus):
    prometheus.firing = [_series(LABELS, _times(0, 15, 30))]  # served for both chunks: overlaps dedupe
    result = _read(prometheus)
    [life] = result.lives
    assert life.labels == {**LABELS, "cluster": "eu-1"}
    assert (life.starts_at.timestamp(), life.ends_at.timestamp()) == (T, T + 45)
    queries = [q for q in prometheus.queries if q["path"] == "/api/v1/query"]
    assert [q["query"] for q in queries] == ['ALERTS{alertstate="firing"}[3600s]', "ALERTS_FOR_STATE[3600s]"] * 2
    assert [float(q["time"]) for q in queries[::2]] == [(NOW - timedelta(hours=1)).timestamp(), NOW.timestamp()]


def test_a_series_without_alertname_is_skipped_and_counted(prometheus):
    prometheus.firing = [_series({"service": "x"}, _times(0)), _series(LABELS, _times(0))]
    result = _read(prometheus, hours=1)
    assert len(result.lives) == 1 and result.skipped == {"series without alertname": 1}


@pytest.mark.parametrize("raw, status, message", [
    (b"<html>proxy error</html>", 200, "not a Prometheus API answer"),
    (b'{"status": "success"}', 200, "not a Prometheus API answer"),
    (b'{"status": "success", "data": {"result": {"a": 1}}}', 200, "not a list of series"),
    (b'{"status": "success", "data": {"result": [{"metric": {"alertname": 5}, "values": []}]}}', 200, "not a matrix"),
    (b'{"status": "success", "data": {"result": [{"metric": {}, "value": [1, "1"]}]}}', 200, "not a matrix"),
    (b'{"status": "error", "error": "bad_data"}', 400, "failed"),
])
def test_a_malformed_or_failed_answer_is_a_clear_error(prometheus, raw, status, message):
    prometheus.raw, prometheus.status = raw, status
    with pytest.raises(InputError, match=message):
        _read(prometheus)


def test_an_oversized_answer_is_refused(prometheus, monkeypatch):
    monkeypatch.setattr(sources_prometheus, "MAX_SERIES", 3)
    prometheus.firing = [_series({**LABELS, "pod": str(i)}, _times(0)) for i in range(4)]
    with pytest.raises(InputError, match="over the 3 limit"):
        _read(prometheus)


def test_an_unreachable_prometheus_is_a_clear_error():
    client = PrometheusConnect("http://127.0.0.1:9", timeout=2, retry=Retry(total=0))
    with pytest.raises(InputError, match="failed at http://127.0.0.1:9"):
        read_alert_history(client, NOW - timedelta(hours=1), NOW, timedelta(hours=1))


# -- the command line ----------------------------------------------------------


def _replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", *args, "--out", "-", "--no-progress"],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    ([], "give one history"),
    (["x.ndjson", "--from-prometheus", "http://p"], "got a file and --from-prometheus"),
    (["--from-prometheus", "http://p"], "needs a start"),
    (["--from-kafka", "--since", "1h", "--republish", "stormdrain.diagnoses"], "live stormdrain topic"),
    (["--from-prometheus", "http://127.0.0.1:9", "--since", "1h"], "failed at http://127.0.0.1:9"),
    (["--from-prometheus", "http://127.0.0.1:9", "--since", "1h", "--alertmanager-config", "missing.yml"],
     "cannot read Alertmanager config"),
    (["--from-prometheus", "http://127.0.0.1:9", "--since", "1h", "--chunk", "0s"], "longer than zero"),
    (["x.ndjson", "--since", "7d"], "--since: applies to --from-kafka and --from-prometheus"),
    (["x.ndjson", "--save-history", "copy.ndjson"], "--save-history: applies to --from-kafka"),
])
def test_the_replay_command_refuses_bad_source_options_without_a_traceback(args, message):
    result = _replay(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_replay_from_prometheus_sends_the_rebuilt_alerts_through_the_given_routes(prometheus, tmp_path):
    prometheus.firing = [_series({**LABELS, "severity": "critical"}, _times(0, 15, 30))]
    config = tmp_path / "am.yml"
    config.write_text("route: {receiver: a, group_wait: 10s}\nreceivers: [{name: a, webhook_configs: [{url: x}]}]\n")
    saved = tmp_path / "history.ndjson"
    result = _replay("--from-prometheus", prometheus.url, "--since", "2025-06-01T10:00:00Z",
                     "--until", "2025-06-01T12:00:00Z", "--chunk", "1h", "--alertmanager-config", str(config),
                     "--save-history", str(saved))
    assert result.returncode == 0, result.stderr
    sent = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [(e["received_at"], e["webhook"]["status"]) for e in sent] == [
        ("2025-06-01T11:00:10Z", "firing"), ("2025-06-01T11:05:10Z", "resolved")]
    assert json.loads(result.stdout.splitlines()[-1])["root_cause"]["service"] == "web"
