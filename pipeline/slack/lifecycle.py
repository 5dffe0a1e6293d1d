"""The life of one Slack message: post once, then update, with a thread reply for what matters.

The notifier remembers, per message, where it is (channel, ts), what it shows
(the diagnosis version) and which thread replies went out. `decide` compares a
new diagnosis with that memory and returns what to do with a named reason:
post the first paging version, update for later ones, add a reply for a
significant change (new root cause, resolved, reopened, a remediation result),
or nothing for an older or repeated version. It reads no clock and no network.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.actions import Approval, Feedback
from pipeline.diagnose import Diagnosis
from pipeline.slack.digest import DigestEntry, changed, entry_for, with_entry
from pipeline.slack.page import new_remediations, reply_text

MAX_REPLIES = 100
MAX_ACTS = 50
POST = "post"  # the token of a message's own post
Kind = Literal["page", "notice", "digest"]
Act = Annotated[Approval | Feedback, Field(discriminator="kind")]


class MessageRef(BaseModel):
    """What the notifier keeps of one Slack message, in a compacted topic keyed by `key`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str  # the incident id for a page, "notice:<id>", or "digest:<channel>:<window>"
    kind: Kind = "page"
    channel: str  # the channel id Slack answered with; the configured name until the post is confirmed
    ts: str = ""  # empty until Slack has confirmed the post
    version: int = 0  # the diagnosis version the message shows
    diagnosis: Diagnosis | None = None  # what it shows, to draw it again when a person acts
    acts: list[Act] = Field(default_factory=list)
    replies: list[str] = Field(default_factory=list)  # tokens of the thread replies that went out
    pending: str = ""  # a post begun and not confirmed: look for it in Slack before posting again
    pending_at: datetime | None = None
    entries: list[DigestEntry] = Field(default_factory=list)  # a digest's lines
    updated: datetime | None = None  # when the notifier last wrote this reference

    def begun(self, token: str, at: datetime) -> "MessageRef":
        return self.model_copy(update={"pending": token, "pending_at": at})

    def posted(self, channel: str, ts: str) -> "MessageRef":
        return self.model_copy(update={"channel": channel, "ts": ts, "pending": "", "pending_at": None})

    def replied(self, token: str) -> "MessageRef":
        return self.model_copy(update={"replies": [*self.replies, token][-MAX_REPLIES:], "pending": "",
                                       "pending_at": None})

    def showing(self, d: Diagnosis) -> "MessageRef":
        if self.kind == "digest":
            return self.model_copy(update={"entries": with_entry(self.entries, entry_for(d))})
        # The page never lists fingerprints; a storm's thousands of them would only swell the saved reference.
        return self.model_copy(update={"version": max(self.version, d.version),
                                       "diagnosis": d.model_copy(update={"fingerprints": []})})

    def with_act(self, act: Approval | Feedback) -> "MessageRef":
        return self.model_copy(update={"acts": [*self.acts, act][-MAX_ACTS:]})

    def knows(self, act: Approval | Feedback) -> bool:
        return any(a.request_id == act.request_id for a in self.acts)


@dataclass(frozen=True)
class Reply:
    token: str
    text: str


@dataclass(frozen=True)
class Decision:
    """What to do with a diagnosis for one message, and why."""

    reason: str  # first | newer | new_root | resolved | reopened | paged | remediation | stale | duplicate | unchanged
    post: bool = False
    update: bool = False
    replies: tuple[Reply, ...] = ()

    @property
    def acts(self) -> bool:
        return self.post or self.update or bool(self.replies)


def decide(ref: MessageRef | None, d: Diagnosis, thread_replies: bool = True) -> Decision:
    """Post, update, reply or nothing: the lifecycle step for one diagnosis version."""
    if ref is not None and ref.kind == "digest":
        return _decide_digest(ref, d)
    if ref is None or not ref.ts:
        return Decision("first", post=True)
    if d.version < ref.version:
        return Decision("stale")
    if d.version == ref.version:
        return Decision("duplicate")
    changes = significant_changes(ref.diagnosis, d)
    replies = tuple(
        Reply(token, reply_text(change, d, ref.diagnosis))
        for change in changes if thread_replies and (token := f"v{d.version}:{change}") not in ref.replies
    )
    return Decision(changes[0] if changes else "newer", update=True, replies=replies)


def _decide_digest(ref: MessageRef, d: Diagnosis) -> Decision:
    if not changed(ref.entries, entry_for(d)):
        return Decision("unchanged")
    return Decision("newer", update=True) if ref.ts else Decision("first", post=True)


def significant_changes(before: Diagnosis | None, d: Diagnosis) -> list[str]:
    """The changes worth a thread reply, most important first."""
    if before is None:
        return []
    found = []
    if (before.root_cause.service, before.root_cause.alert) != (d.root_cause.service, d.root_cause.alert):
        found.append("new_root")
    if before.status != d.status:
        found.append("resolved" if d.status == "resolved" else "reopened")
    if before.paged_at is None and d.paged_at is not None:
        found.append("paged")
    if new_remediations(d, before):
        found.append("remediation")
    return found


def merge(known: MessageRef | None, incoming: MessageRef) -> MessageRef:
    """Two writers' views of one message made one: the newer content, every act and reply, a confirmed post."""
    if known is None:
        return incoming
    base, other = (incoming, known) if incoming.version >= known.version else (known, incoming)
    acts = {a.request_id: a for a in [*other.acts, *base.acts]}
    replies = list(dict.fromkeys([*other.replies, *base.replies]))[-MAX_REPLIES:]
    entries = base.entries
    for entry in other.entries:
        if changed(entries, entry) and not any(e.incident_id == entry.incident_id and e.version >= entry.version
                                               for e in entries):
            entries = with_entry(entries, entry)
    posted = base if base.ts else other
    return base.model_copy(update={
        "channel": posted.channel, "ts": posted.ts, "acts": sorted(acts.values(), key=lambda a: a.at)[-MAX_ACTS:],
        "replies": replies, "entries": entries,
        "pending": "" if (posted.ts and base.pending == POST) or base.pending in replies else base.pending,
    })
