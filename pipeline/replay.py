"""Replay readers: NDJSON lines of webhooks, envelopes or `alerts.raw` records, to records.

Each line is detected on its own. A line that cannot be read is reported with
its number and the field that is wrong, and the replay goes on.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Callable, Iterator

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.alerts import (AlertRecord, InputError, Time, Webhook, parse_time, parse_webhook, split_webhook,
                             validation_error)

MAX_LINE_BYTES = 40 << 20  # an envelope of the largest webhook the bridge takes (32 MiB)
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Line:
    """One replay line read: its number, its event time, its records, or why it was not taken."""

    number: int
    size: int
    kind: str = ""
    received_at: datetime | None = None
    records: tuple[AlertRecord, ...] = ()
    error: InputError | None = None
    cut: bool = False  # the input broke off here: whatever followed was not read


def open_input(path: str) -> IO[bytes]:
    """Open a replay file or standard input for "-"; gzip is told by its first bytes, whatever the name."""
    if path == "-":
        raw = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")
        except OSError as exc:
            raise InputError(path, f"cannot open replay file: {exc.strerror}") from None
    return gzip.open(raw) if raw.peek(2)[:2] == GZIP_MAGIC else raw


def read_lines(stream: IO[bytes], scope_of: Callable[[dict[str, str]], str],
               limit: int = MAX_LINE_BYTES) -> Iterator[Line]:
    """Yield one Line per non-blank input line; a stream that breaks off (a cut .gz) ends with an error Line."""
    number = 0
    try:
        for number, raw in enumerate(_bounded_lines(stream, limit), start=1):
            if raw is None:
                yield Line(number, limit + 1, error=InputError(f"line {number}", f"line is over the {limit} byte limit"))
            elif raw.strip():
                yield parse_line(raw, number, scope_of)
    except (EOFError, OSError, zlib.error) as exc:
        yield Line(number + 1, 0, error=InputError(f"line {number + 1}", f"the input breaks off here: {exc}"), cut=True)


class Envelope(BaseModel):
    """A webhook body with the time the bridge (or a recorder) received it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    received_at: Time
    webhook: Webhook


def parse_line(raw: bytes, number: int, scope_of: Callable[[dict[str, str]], str]) -> Line:
    """Read one line; well-formed lines take a fast path, the rest get a precise error."""
    fast = _fast(raw, scope_of)
    if fast is not None:
        kind, received_at, records = fast
        return Line(number, len(raw), kind, received_at, tuple(records))
    where = f"line {number}"
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError as exc:
        return Line(number, len(raw), error=InputError(where, f"not UTF-8 text (byte {exc.start})"))
    except json.JSONDecodeError as exc:
        return Line(number, len(raw), error=InputError(where, f"not JSON: {exc}"))
    except RecursionError:
        return Line(number, len(raw), error=InputError(where, "JSON nested too deeply"))
    try:
        kind, received_at, records = _records(obj, scope_of)
    except InputError as exc:
        return Line(number, len(raw), error=InputError(f"{where}: {exc.field}".rstrip(": "), exc.reason))
    return Line(number, len(raw), kind, received_at, tuple(records))


def _fast(raw: bytes, scope_of: Callable) -> tuple[str, datetime, list[AlertRecord]] | None:
    """Parse and validate in one pass (pydantic's JSON parser); None sends the line the slow way."""
    try:
        if b'"webhook"' in raw:
            envelope = Envelope.model_validate_json(raw)
            return "envelope", envelope.received_at, split_webhook(envelope.webhook, envelope.received_at, scope_of)
        if b'"received_at"' in raw:
            record = AlertRecord.model_validate_json(raw)
            return "record", record.received_at, [record.model_copy(update={"scope": scope_of(record.alert.labels)})]
        webhook = Webhook.model_validate_json(raw)
    except ValidationError:
        return None
    if not webhook.alerts:
        return None
    received_at = webhook.latest_time()
    return "webhook", received_at, split_webhook(webhook, received_at, scope_of)


def _records(obj: object, scope_of: Callable) -> tuple[str, datetime, list[AlertRecord]]:
    if not isinstance(obj, dict):
        raise InputError("", "a line must be a JSON object")
    if "webhook" in obj:
        received_at = _time(obj.get("received_at"), "received_at")
        webhook = _webhook(obj["webhook"], "webhook")
        return "envelope", received_at, split_webhook(webhook, received_at, scope_of)
    if "alert" in obj and "received_at" in obj:
        record = _record(obj)
        record = record.model_copy(update={"scope": scope_of(record.alert.labels)})
        return "record", record.received_at, [record]
    if "alerts" in obj:
        webhook = _webhook(obj, "")
        if not webhook.alerts:
            raise InputError("alerts", "a bare webhook with no alerts has no event time")
        received_at = webhook.latest_time()
        return "webhook", received_at, split_webhook(webhook, received_at, scope_of)
    raise InputError("", "not a webhook body, an envelope {received_at, webhook} or an alerts.raw record")


def _time(value: object, field: str) -> datetime:
    try:
        parsed = parse_time(value)
    except ValueError as exc:
        raise InputError(field, str(exc)) from None
    if parsed is None:
        raise InputError(field, "is required")
    return parsed


def _webhook(body: object, prefix: str):
    try:
        return parse_webhook(body)
    except InputError as exc:
        raise InputError(".".join(p for p in (prefix, exc.field) if p), exc.reason) from None


def _record(obj: dict) -> AlertRecord:
    try:
        return AlertRecord.model_validate(obj)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _bounded_lines(stream: IO[bytes], limit: int) -> Iterator[bytes | None]:
    """Lines of at most `limit` bytes; None stands for a longer line, which is skipped whole."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(1 << 20)
            yield None
            continue
        yield line


def write_ndjson(path: str) -> IO[str]:
    if path == "-":
        return io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=False)
    return _open_out(path)


def write_output(path: str, text: str) -> None:
    """Write a command's --out file; a path that cannot be written is an InputError, not a traceback."""
    with _open_out(path) as out:
        out.write(text)


def check_writable(path: str, option: str = "--out") -> None:
    """Refuse an output that cannot be written before a long run, not after it."""
    target = Path(path)
    folder = target.resolve().parent
    if target.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise InputError(option, f"cannot write {path}: " + ("it is a folder" if target.is_dir() else
                                                            "its folder does not exist or is not writable"))


def _open_out(path: str) -> IO[str]:
    try:
        return Path(path).open("w", encoding="utf-8")
    except OSError as exc:
        raise InputError("--out", f"cannot write {path}: {exc.strerror}") from None
