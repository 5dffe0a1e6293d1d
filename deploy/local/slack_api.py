#!/usr/bin/env python3
"""A local server that speaks the Slack Web API methods stormdrain uses, and records every call.

Stdlib only. slack-sdk talks to it for real through ``base_url``
(``<url>/api/``): ``auth.test``, ``chat.postMessage`` (with ``thread_ts`` for
thread replies and ``metadata``), ``chat.update``, ``conversations.history``
and ``conversations.replies``. Answers are shaped as Slack's (``ok``,
``channel``, ``ts``, ``message``; API errors as ``{"ok": false, "error": ...}``
in an HTTP 200). Like Slack it checks the bot token, resolves channel names to
ids, and refuses blocks over Block Kit's limits (``invalid_blocks``). Faults on
demand come from the recorder: ``rate_limit(n, retry_after)`` answers the next
n calls with HTTP 429 and Retry-After; ``fail(...)`` gives a 5xx or an error.

From Python::

    mod = <load deploy/local/slack_api.py by path>
    with mod.SlackAPI(token="xoxb-test").start() as slack:
        WebClient(token="xoxb-test", base_url=slack.base_url)
        slack.of("chat.postMessage"); slack.messages[channel_id]

Command line::

    python deploy/local/slack_api.py [--port 0] [--token xoxb-test]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import importlib.util

# The recorder beside this file, loaded by path as the tests load these scripts.
_spec = importlib.util.spec_from_file_location("stormdrain_local_recorder", Path(__file__).with_name("recorder.py"))
recorder = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
if not hasattr(recorder, "Recorder"):
    _spec.loader.exec_module(recorder)
Answer = recorder.Answer

BOT_USER = "U0STORMBOT"
BOT_ID = "B0STORMBOT"
TEAM_ID = "T0STORMDRN"
LIMITS = {"blocks": 50, "section": 3000, "header": 150, "fields": 10, "field": 2000}


class SlackAPI(recorder.Recorder):
    """Slack's Web API, in memory: channels, messages, threads and metadata."""

    name = "slack-api"

    def __init__(self, token: str = "xoxb-test", channels: dict[str, str] | None = None, port: int = 0):
        super().__init__(port)
        self.token = token
        self.known = channels  # name -> id; None: any channel name exists
        self.messages: dict[str, list[dict]] = {}  # channel id -> messages, oldest first
        self._ts = itertools.count(1)

    @property
    def base_url(self) -> str:
        return self.url + "/api/"

    def method_of(self, path: str) -> str:
        return path.removeprefix("/api/").strip("/")

    def call(self, method: str, params: dict, headers: dict) -> Answer:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if not auth:
            return _error("not_authed")
        if auth != f"Bearer {self.token}":
            return _error("invalid_auth")
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return _error("unknown_method")
        with self.lock:
            return handler(params)

    # -- methods ---------------------------------------------------------------

    def _auth_test(self, params: dict) -> Answer:
        return _ok(url="https://stormdrain-local.slack.com/", team="stormdrain", user="stormdrain",
                   team_id=TEAM_ID, user_id=BOT_USER, bot_id=BOT_ID)

    def _chat_postMessage(self, params: dict) -> Answer:
        channel = self._channel(params.get("channel"))
        if channel is None:
            return _error("channel_not_found")
        content = _content(params)
        if isinstance(content, Answer):
            return content
        message = {"type": "message", "subtype": "bot_message", "user": BOT_USER, "bot_id": BOT_ID,
                   "ts": self._next_ts(), **content}
        thread_ts = params.get("thread_ts")
        if thread_ts:
            if not any(m["ts"] == thread_ts for m in self.messages.get(channel, [])):
                return _error("thread_not_found")
            message["thread_ts"] = thread_ts
        metadata = _json(params.get("metadata"))
        if metadata:
            message["metadata"] = metadata
        self.messages.setdefault(channel, []).append(message)
        return _ok(channel=channel, ts=message["ts"], message=_public(message))

    def _chat_update(self, params: dict) -> Answer:
        channel = self._channel(params.get("channel"))
        found = next((m for m in self.messages.get(channel or "", []) if m["ts"] == params.get("ts")), None)
        if found is None:
            return _error("message_not_found")
        content = _content(params)
        if isinstance(content, Answer):
            return content
        found.update(content, edited={"user": BOT_USER, "ts": self._next_ts()})
        return _ok(channel=channel, ts=found["ts"], text=found.get("text", ""), message=_public(found))

    def _conversations_history(self, params: dict) -> Answer:
        channel = self._channel(params.get("channel"))
        if channel is None:
            return _error("channel_not_found")
        oldest = float(params.get("oldest") or 0)
        top = [m for m in self.messages.get(channel, []) if "thread_ts" not in m and float(m["ts"]) >= oldest]
        limit = int(params.get("limit") or 100)
        shown = [_public(m, _flag(params.get("include_all_metadata"))) for m in reversed(top)][:limit]
        return _ok(messages=shown, has_more=len(top) > limit, response_metadata={"next_cursor": ""})

    def _conversations_replies(self, params: dict) -> Answer:
        channel = self._channel(params.get("channel"))
        thread = [m for m in self.messages.get(channel or "", [])
                  if m["ts"] == params.get("ts") or m.get("thread_ts") == params.get("ts")]
        if not thread:
            return _error("thread_not_found")
        meta = _flag(params.get("include_all_metadata"))
        return _ok(messages=[_public(m, meta) for m in thread], has_more=False,
                   response_metadata={"next_cursor": ""})

    # -- helpers ---------------------------------------------------------------

    def _channel(self, name: Any) -> str | None:
        """A channel id from an id or a name, as Slack resolves them; None if there is no such channel."""
        if not isinstance(name, str) or not name:
            return None
        if name in self.messages or (self.known and name in self.known.values()):
            return name
        bare = name.lstrip("#")
        if self.known is not None:
            return self.known.get(bare) or self.known.get(name)
        return "C" + hashlib.sha1(bare.encode()).hexdigest()[:10].upper()

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def posts(self, channel: str | None = None) -> list[dict]:
        """Every message in a channel (or all), oldest first, thread replies included."""
        with self.lock:
            chans = [self._channel(channel)] if channel else list(self.messages)
            return [m for c in chans for m in self.messages.get(c, [])]


def _content(params: dict) -> dict | Answer:
    blocks = _json(params.get("blocks"))
    text = params.get("text") or ""
    if not blocks and not text:
        return _error("no_text")
    if blocks is not None:
        problem = _block_problem(blocks)
        if problem:
            return Answer(200, {"ok": False, "error": "invalid_blocks", "errors": [problem]})
    if len(text) > 40000:
        return _error("msg_too_long")
    return {"text": text, "blocks": blocks or []}


def _block_problem(blocks: Any) -> str | None:
    """The first Block Kit limit broken, counted in code points, as Slack reports it."""
    if not isinstance(blocks, list) or len(blocks) > LIMITS["blocks"]:
        return f"must provide an array of at most {LIMITS['blocks']} blocks"
    for i, block in enumerate(blocks):
        text = (block.get("text") or {}).get("text", "")
        kind = block.get("type")
        if kind == "header" and len(text) > LIMITS["header"]:
            return f"must be less than {LIMITS['header'] + 1} characters [json-pointer:/blocks/{i}/text]"
        if kind == "section" and len(text) > LIMITS["section"]:
            return f"must be less than {LIMITS['section'] + 1} characters [json-pointer:/blocks/{i}/text]"
        fields = block.get("fields") or []
        if len(fields) > LIMITS["fields"] or any(len(f.get("text", "")) > LIMITS["field"] for f in fields):
            return f"fields over their limits [json-pointer:/blocks/{i}/fields]"
    return None


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _flag(value: Any) -> bool:
    return value in (True, "true", "1", 1)


def _public(message: dict, with_metadata: bool = False) -> dict:
    shown = {k: v for k, v in message.items() if k != "metadata"}
    if with_metadata and "metadata" in message:
        shown["metadata"] = message["metadata"]
    return shown


def _ok(**body: Any) -> Answer:
    return Answer(200, {"ok": True, **body})


def _error(error: str) -> Answer:
    return Answer(200, {"ok": False, "error": error})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local Slack Web API that records every call.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="xoxb-test", help="the bot token it accepts")
    args = parser.parse_args(argv)
    return recorder.serve_forever(SlackAPI(args.token, port=args.port), "Slack Web API (base_url <url>/api/)")


if __name__ == "__main__":
    sys.exit(main())
