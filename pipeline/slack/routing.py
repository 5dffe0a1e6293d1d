"""Where a diagnosis goes in Slack: the page channel by route, and the quiet channel or digest for the rest."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from pipeline.config import Route, SlackConfig
from pipeline.diagnose import Diagnosis
from pipeline.slack.digest import digest_key
from pipeline.slack.lifecycle import Kind, MessageRef


@dataclass(frozen=True)
class Target:
    """One Slack message a diagnosis shows on."""

    key: str
    kind: Kind
    channel: str


def route(d: Diagnosis, config: SlackConfig) -> str:
    """The page channel: the first route whose conditions all hold, else the default channel."""
    return next((r.channel for r in config.routes if _fits(r, d)), config.channel)


def _fits(r: Route, d: Diagnosis) -> bool:
    checks = [(r.scope, d.scope), (r.severity, d.severity), (r.service, d.root_cause.service or "")]
    checks += [(pattern, d.root_cause.labels.get(label, "")) for label, pattern in r.labels.items()]
    return all(pattern is None or re.fullmatch(pattern, value) for pattern, value in checks)


def targets(d: Diagnosis, config: SlackConfig, refs: Mapping[str, MessageRef]) -> list[Target]:
    """Every message this version shows on.

    A paging incident has its page. One that does not page goes to the quiet
    channel or the digest (by configuration); once noticed there, it stays
    there too, so the quiet line says when it resolves or starts to page.
    """
    found = [Target(d.incident_id, "page", route(d, config))] if d.paged_at else []
    notice = _notice(d, config)
    if notice is not None and (d.paged_at is None or _noticed(refs.get(notice.key), d)):
        found.append(notice)
    return found


def _notice(d: Diagnosis, config: SlackConfig) -> Target | None:
    if config.notices == "channel":
        return Target(f"notice:{d.incident_id}", "notice", config.notice_channel)
    if config.notices == "digest":
        return Target(digest_key(config.notice_channel, d, config.digest_window), "digest", config.notice_channel)
    return None


def _noticed(ref: MessageRef | None, d: Diagnosis) -> bool:
    if ref is None:
        return False
    return ref.kind != "digest" or any(e.incident_id == d.incident_id for e in ref.entries)
