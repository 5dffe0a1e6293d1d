"""Block Kit within Slack's limits: escaping, lengths as Slack counts them, clipping, the blocks.

Every text that leaves here fits its limit however long the input: lists end
in "and N more", and a cut never splits a grapheme (a CJK character, an emoji
with its modifiers, a flag) or an escape entity. Lengths are counted in UTF-16
code units, which is never less than the count in code points, so a text fits
whichever of the two Slack counts.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

import regex

MAX_BLOCKS = 50
MAX_TEXT = 3000  # section text, context elements, the message's fallback text
MAX_HEADER = 150
MAX_FIELDS = 10
MAX_FIELD = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000
MAX_ID = 255
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
ELLIPSIS = "…"

# A grapheme cluster, or an escape entity that must stay whole.
_TOKENS = regex.compile(r"&(?:amp|lt|gt);|\X")
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


def clean(text: object) -> str:
    """Text safe to send: lone surrogates replaced, control characters dropped."""
    text = str(text).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return _CONTROLS.sub("", text)


def escape(text: object) -> str:
    """Slack's escaping for mrkdwn: only &, < and >, which Slack parses as controls."""
    return clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def one_line(text: object) -> str:
    return _SPACES.sub(" ", clean(text)).strip()


def slack_len(text: str) -> int:
    """The length Slack holds a text to: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clip(text: str, limit: int, tail: str = ELLIPSIS) -> str:
    """Cut a text to `limit` at a grapheme boundary, marking the cut with `tail`."""
    if slack_len(text) <= limit:
        return text
    budget = limit - slack_len(tail)
    kept: list[str] = []
    for token in _TOKENS.findall(text):
        budget -= slack_len(token)
        if budget < 0:
            break
        kept.append(token)
    return "".join(kept) + tail


def bounded_list(items: Iterable[str], limit: int, sep: str = "\n",
                 more: Callable[[int], str] = lambda n: f"and {n} more") -> str:
    """Join whole items while they fit in `limit`; the rest are counted in one "and N more"."""
    items = list(items)
    reserve = slack_len(sep + more(len(items)))
    kept: list[str] = []
    used = 0
    for index, item in enumerate(items):
        item = clip(item, max(limit - reserve, 1))
        cost = slack_len(item) + (slack_len(sep) if kept else 0)
        left = len(items) - index - 1
        if used + cost > (limit if left == 0 else limit - reserve):
            return sep.join(kept + [more(len(items) - index)]) if kept else clip(more(len(items)), limit)
        kept.append(item)
        used += cost
    return sep.join(kept)


# -- blocks --------------------------------------------------------------------


def mrkdwn(text: str, limit: int = MAX_TEXT) -> dict:
    """A mrkdwn text object; `text` is already escaped."""
    return {"type": "mrkdwn", "text": clip(text, limit) or " "}


def plain(text: object, limit: int) -> dict:
    return {"type": "plain_text", "text": clip(one_line(text), limit) or " ", "emoji": True}


def header(text: object) -> dict:
    return {"type": "header", "text": plain(text, MAX_HEADER)}


def section(text: str, fields: Iterable[str] = (), block_id: str | None = None) -> dict:
    """A section of escaped mrkdwn, with up to ten fields beside it."""
    block: dict = {"type": "section", "text": mrkdwn(text)}
    shown = [mrkdwn(f, MAX_FIELD) for f in list(fields)[:MAX_FIELDS]]
    if shown:
        block["fields"] = shown
    return _with_id(block, block_id)


def context(*texts: str, block_id: str | None = None) -> dict:
    return _with_id({"type": "context", "elements": [mrkdwn(t) for t in texts[:MAX_CONTEXT_ELEMENTS]]}, block_id)


def actions(buttons: Iterable[dict], block_id: str | None = None) -> dict:
    return _with_id({"type": "actions", "elements": list(buttons)[:MAX_ACTIONS]}, block_id)


def divider() -> dict:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str, style: str | None = None, confirm: dict | None = None) -> dict:
    """A button; its value must fit (it carries what the click needs) or this raises."""
    if slack_len(value) > MAX_BUTTON_VALUE:
        raise ValueError(f"button value of {slack_len(value)} characters, over {MAX_BUTTON_VALUE}")
    element = {"type": "button", "text": plain(text, MAX_BUTTON_TEXT), "action_id": action_id[:MAX_ID],
               "value": value}
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def confirm(title: str, text: str, ok: str, deny: str) -> dict:
    """A confirmation dialog; `text` is escaped mrkdwn."""
    return {"title": plain(title, MAX_CONFIRM_TITLE), "text": mrkdwn(text, MAX_CONFIRM_TEXT),
            "confirm": plain(ok, MAX_CONFIRM_BUTTON), "deny": plain(deny, MAX_CONFIRM_BUTTON)}


def link(url: str, label: str) -> str:
    """A mrkdwn link to an http(s) URL, or the label alone when the URL is not one."""
    url = clean(url).strip()
    if not re.match(r"^https?://[^\s|<>]+$", url) or slack_len(url) > MAX_URL:
        return escape(label)
    return f"<{url.replace('&', '&amp;')}|{escape(label)}>"


def fit_blocks(blocks: list[dict], more: Callable[[int], dict] | None = None) -> list[dict]:
    """At most 50 blocks: the last place says how many were left out."""
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    left = len(blocks) - MAX_BLOCKS + 1
    note = more(left) if more else context(f"and {left} more blocks not shown")
    return blocks[: MAX_BLOCKS - 1] + [note]


def _with_id(block: dict, block_id: str | None) -> dict:
    if block_id:
        block["block_id"] = block_id[:MAX_ID]
    return block


# -- checking ------------------------------------------------------------------


def problems(blocks: list[dict], text: str = "") -> list[str]:
    """Every Block Kit limit a message breaks, as readable lines (empty when it fits)."""
    found = [f"{len(blocks)} blocks, over {MAX_BLOCKS}"] if len(blocks) > MAX_BLOCKS else []
    if slack_len(text) > MAX_TEXT:
        found.append(f"fallback text of {slack_len(text)} characters")
    for index, block in enumerate(blocks):
        found += [f"block {index} ({block.get('type')}): {p}" for p in _block_problems(block)]
    return found


def _block_problems(block: dict) -> list[str]:
    kind = block.get("type")
    checks: list[tuple[str, int]] = []
    if kind == "header":
        checks.append((block["text"]["text"], MAX_HEADER))
    if kind == "section":
        checks.append((block["text"]["text"], MAX_TEXT))
        checks += [(f["text"], MAX_FIELD) for f in block.get("fields", [])]
    if kind == "context":
        checks += [(e.get("text", ""), MAX_TEXT) for e in block["elements"]]
    if kind == "actions":
        checks += [(b["text"]["text"], MAX_BUTTON_TEXT) for b in block["elements"]]
        checks += [(b["value"], MAX_BUTTON_VALUE) for b in block["elements"]]
    found = [f"text of {slack_len(t)} characters, over {n}" for t, n in checks if slack_len(t) > n]
    found += ["empty text" for t, _ in checks if not t.strip()]
    counts = {"fields": MAX_FIELDS, "elements": MAX_CONTEXT_ELEMENTS if kind == "context" else MAX_ACTIONS}
    found += [f"{len(block[k])} {k}, over {n}" for k, n in counts.items() if len(block.get(k, [])) > n]
    if len(block.get("block_id", "")) > MAX_ID:
        found.append("block_id over 255")
    return found
