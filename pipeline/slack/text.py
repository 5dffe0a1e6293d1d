"""Block Kit as readable text: a screenshot-like view of a Slack message for terminals and the README."""

from __future__ import annotations

import re

_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
_MENTION = re.compile(r"<@([A-Z0-9]+)>")
_CODE = re.compile(r"```(.*?)```", re.S)
RULE = "─" * 72


def to_text(blocks: list[dict]) -> str:
    """Each block as Slack lays it out: header, text, two columns of fields, buttons in brackets."""
    lines = [RULE]
    for block in blocks:
        lines += _block(block)
    lines.append(RULE)
    return "\n".join(lines) + "\n"


def _block(block: dict) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        return [f"  {block['text']['text']}", ""]
    if kind == "section":
        out = _text(block["text"]["text"]) if "text" in block else []
        return out + _columns([_mrkdwn(f["text"]) for f in block.get("fields", [])]) + [""]
    if kind == "context":
        return ["  " + "   ".join(_mrkdwn(e.get("text", "")).replace("\n", " ") for e in block["elements"]), ""]
    if kind == "actions":
        return ["  " + " ".join(f"[ {b['text']['text']} ]" for b in block["elements"]), ""]
    if kind == "divider":
        return ["  " + "-" * 68]
    return [f"  ({kind} block)"]


def _text(text: str) -> list[str]:
    return ["  " + line for line in _mrkdwn(text).split("\n")]


def _columns(fields: list[str]) -> list[str]:
    out = []
    for left, right in zip(fields[::2], fields[1::2] + [""]):
        left_lines, right_lines = left.split("\n"), right.split("\n")
        for i in range(max(len(left_lines), len(right_lines))):
            a = left_lines[i] if i < len(left_lines) else ""
            b = right_lines[i] if i < len(right_lines) else ""
            out.append(f"  {a:<36} {b}".rstrip())
    return out


def _mrkdwn(text: str) -> str:
    """Formatting marks dropped, links and mentions shown, entities turned back into characters."""
    text = _CODE.sub(lambda m: "    $ " + m.group(1).strip().replace("\n", "\n    "), text)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    text = _MENTION.sub(lambda m: f"@{m.group(1)}", text)
    text = re.sub(r"(?<![\w`])\*([^*\n]+)\*(?![\w`])", r"\1", text)
    text = text.replace("`", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip("\n")
