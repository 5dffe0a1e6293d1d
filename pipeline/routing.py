"""Alertmanager's routing configuration, read from alertmanager.yml: route tree, receivers, inhibit rules.

It reads what decides which webhooks an Alertmanager sends (the route tree with
`matchers`, `match`, `match_re`, `continue`, `group_by` incl. '...',
`group_wait`, `group_interval`, `repeat_interval`; receivers and their
`send_resolved`; `inhibit_rules`), checks it the way Alertmanager does, and
names the field when something is wrong. Everything else in the file (global,
templates, integration details) is accepted and ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from pipeline.alerts import InputError, validation_error
from pipeline.grouping import Route

MAX_CONFIG_BYTES = 4 << 20
MAX_NODES = 200_000  # YAML nodes after aliases are expanded: a bound against alias bombs
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MATCHER = re.compile(r'^\s*("(?:[^"\\]|\\.)*"|[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.S)
_PROM_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
# send_resolved when an integration does not say, per Alertmanager's defaults.
SEND_RESOLVED_DEFAULT = {"email_configs": False, "slack_configs": False, "wechat_configs": False}


def prometheus_duration(value: Any) -> timedelta:
    """Read a Prometheus duration ("1h30m", "5m", "30s", "1d", "250ms") as a timedelta."""
    if isinstance(value, timedelta):
        return value
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    match = _PROM_DURATION.match(text)
    if text == "0":
        return timedelta(0)
    if not text or not match:
        raise ValueError(f"not a duration: {str(value)[:40]!r} (use 30s, 5m, 1h30m, 1d)")
    amounts = match.groups()[1::2]
    return timedelta(seconds=sum(int(n) * unit for n, unit in zip(amounts, _DURATION_UNITS) if n))


PromDuration = Annotated[timedelta, BeforeValidator(prometheus_duration)]


@dataclass(frozen=True)
class Matcher:
    """One label matcher as Alertmanager writes it: name, type (=, !=, =~, !~), value."""

    name: str
    op: str
    value: str
    pattern: re.Pattern | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")  # a missing label matches the empty string, as in Alertmanager
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        return bool(self.pattern.fullmatch(actual)) == (self.op == "=~")

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def matcher(name: str, op: str, value: str) -> Matcher:
    """Build a matcher; a regex is anchored at both ends, as Alertmanager anchors it."""
    if op in ("=~", "!~"):
        try:
            return Matcher(name, op, value, re.compile(value))
        except re.error as exc:
            raise ValueError(f"bad regular expression {value[:60]!r}: {exc}") from None
    return Matcher(name, op, value)


def parse_matchers(text: str) -> list[Matcher]:
    """Parse one `matchers` entry: 'a="b"', 'a=~"x|y"', a != b, or several in braces, comma separated."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    return [_parse_one(part) for part in _split_commas(body) if part.strip()]


def _split_commas(text: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
        quoted = quoted != (char == '"' and not escaped)
        escaped = char == "\\" and not escaped
    if quoted:
        raise ValueError(f"unterminated quote in matcher {text[:60]!r}")
    return parts + ["".join(current)]


def _parse_one(text: str) -> Matcher:
    match = _MATCHER.match(text)
    if not match:
        raise ValueError(f"bad matcher {text.strip()[:60]!r} (use name=\"value\", name=~\"regex\", != or !~)")
    name, op, value = match.groups()
    if name.startswith('"'):
        name = _unquote(name)
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise ValueError(f"bad matcher value {value[:60]!r}: unterminated quote")
        value = _unquote(value)
    return matcher(name, op, value)


def _unquote(text: str) -> str:
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), text[1:-1])


def _label_names(names: list[str]) -> list[str]:
    for name in names:
        if name != "..." and not LABEL_NAME.match(name):
            raise ValueError(f"{name[:60]!r} is not a valid label name")
    if len(set(names)) != len(names):
        raise ValueError("a label is listed twice")
    if "..." in names and len(names) > 1:
        raise ValueError("'...' (group by all labels) cannot be combined with other labels")
    return names


LabelNames = Annotated[list[str], BeforeValidator(lambda v: _label_names(list(v)) if isinstance(v, list) else v)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, coerce_numbers_to_str=True)


def _matchers_of(spec: dict[str, str], regex: dict[str, str], texts: list[str]) -> tuple[Matcher, ...]:
    """All matchers of a route or rule side, sorted as Alertmanager sorts them (name, value, type)."""
    out = [matcher(_checked_name(k), "=", v) for k, v in spec.items()]
    # Alertmanager anchors match_re itself, and its route keys show the anchored form.
    out += [matcher(_checked_name(k), "=~", f"^(?:{v})$") for k, v in regex.items()]
    for text in texts:
        out += parse_matchers(text)
    return tuple(sorted(out, key=lambda m: (m.name, m.value, m.op)))


def _checked_name(name: str) -> str:
    if not LABEL_NAME.match(name):
        raise ValueError(f"{name[:60]!r} is not a valid label name")
    return name


class RouteSpec(_Spec):
    """A route as written in alertmanager.yml; unset fields inherit from the parent."""

    receiver: str | None = None
    group_by: LabelNames | None = None
    continue_: bool = Field(default=False, alias="continue")
    matchers: list[str] = Field(default_factory=list)
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    group_wait: PromDuration | None = None
    group_interval: PromDuration | None = None
    repeat_interval: PromDuration | None = None
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)
    routes: list["RouteSpec"] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "RouteSpec":
        _matchers_of(self.match, self.match_re, self.matchers)  # a bad matcher fails here, with its path
        for name in ("group_interval", "repeat_interval"):
            if getattr(self, name) == timedelta(0):
                raise ValueError(f"{name} cannot be zero")
        return self


class InhibitSpec(_Spec):
    """An inhibit rule: while a source alert fires, target alerts with equal labels are muted."""

    source_matchers: list[str] = Field(default_factory=list)
    target_matchers: list[str] = Field(default_factory=list)
    source_match: dict[str, str] = Field(default_factory=dict)
    source_match_re: dict[str, str] = Field(default_factory=dict)
    target_match: dict[str, str] = Field(default_factory=dict)
    target_match_re: dict[str, str] = Field(default_factory=dict)
    equal: LabelNames = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "InhibitSpec":
        _matchers_of(self.source_match, self.source_match_re, self.source_matchers)
        _matchers_of(self.target_match, self.target_match_re, self.target_matchers)
        return self


class ReceiverSpec(BaseModel):
    """A receiver: a name and its integrations (webhook_configs, slack_configs, ...), each a list."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "ReceiverSpec":
        for kind, configs in (self.model_extra or {}).items():
            if not kind.endswith("_configs"):
                raise ValueError(f"unknown receiver field {kind!r}")
            if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
                raise ValueError(f"{kind} must be a list of mappings")
        return self

    def integrations(self) -> list[tuple[str, dict]]:
        """(kind, settings) of every integration, webhooks first: a webhook is what reaches stormdrain."""
        pairs = [(kind, c) for kind, configs in (self.model_extra or {}).items() for c in configs]
        return sorted(pairs, key=lambda pair: pair[0] != "webhook_configs")


class ConfigSpec(BaseModel):
    """alertmanager.yml: the parts that decide what is sent, and the rest accepted as is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    route: RouteSpec
    receivers: list[ReceiverSpec] = Field(default_factory=list)
    inhibit_rules: list[InhibitSpec] = Field(default_factory=list)
    global_: dict[str, Any] = Field(default_factory=dict, alias="global")
    templates: list[str] = Field(default_factory=list)
    mute_time_intervals: list[dict[str, Any]] = Field(default_factory=list)
    time_intervals: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True)
class RouteNode:
    """One route of the tree with everything inherited filled in; `key` is Alertmanager's route key."""

    index: int
    key: str
    matchers: tuple[Matcher, ...]
    route: Route  # receiver, group_by (empty tuple with `group_all`), timings
    group_all: bool
    continue_: bool
    routes: tuple["RouteNode", ...] = ()

    def match(self, labels: dict[str, str]) -> list["RouteNode"]:
        """The routes an alert goes to: depth first, the first matching child unless it says continue."""
        if not all(m.matches(labels) for m in self.matchers):
            return []
        found: list[RouteNode] = []
        for child in self.routes:
            matched = child.match(labels)
            found += matched
            if matched and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: dict[str, str]) -> dict[str, str]:
        """The labels that name an alert's aggregation group under this route (only those it has)."""
        if self.group_all:
            return dict(labels)
        return {name: labels[name] for name in self.route.group_by if name in labels}


@dataclass(frozen=True)
class Receiver:
    """A receiver as a simulation needs it: does it send anything, resolved alerts, how many at most."""

    name: str
    integrations: int
    send_resolved: bool
    max_alerts: int = 0


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


@dataclass(frozen=True)
class AlertmanagerConfig:
    """The route tree, the receivers by name and the inhibit rules of one Alertmanager."""

    root: RouteNode
    receivers: dict[str, Receiver]
    inhibit_rules: tuple[InhibitRule, ...]
    ignored: tuple[str, ...] = ()  # what the file asks for that a replay does not simulate

    def routes(self) -> list[RouteNode]:
        out, todo = [], [self.root]
        while todo:
            node = todo.pop(0)
            out.append(node)
            todo[:0] = node.routes
        return out


def load_alertmanager_config(path: str | Path) -> AlertmanagerConfig:
    """Read and check alertmanager.yml; an InputError names the file and the field."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise InputError(str(path), f"Alertmanager config is over the {MAX_CONFIG_BYTES} byte limit")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), f"cannot read Alertmanager config: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(str(path), "Alertmanager config is not UTF-8 text") from None
    return parse_alertmanager_config(text, str(path))


def parse_alertmanager_config(text: str, where: str = "alertmanager.yml") -> AlertmanagerConfig:
    """Check the text of alertmanager.yml and build the running route tree."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(where, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise InputError(where, "Alertmanager config is nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(where, "an Alertmanager config must be a YAML mapping with a route")
    _bounded(data, where)
    try:
        spec = ConfigSpec.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, prefix=where) from None
    return _build(spec, where)


def _bounded(data: Any, where: str) -> None:
    """Refuse a document that aliases expand beyond MAX_NODES nodes (a 'billion laughs')."""
    budget, todo = MAX_NODES, [data]
    while todo:
        node = todo.pop()
        budget -= 1
        if budget < 0:
            raise InputError(where, f"Alertmanager config expands to over {MAX_NODES} YAML nodes")
        if isinstance(node, dict):
            todo += [*node.keys(), *node.values()]
        elif isinstance(node, list):
            todo += node


def _build(spec: ConfigSpec, where: str) -> AlertmanagerConfig:
    root = spec.route
    if not root.receiver:
        raise InputError(f"{where}: route.receiver", "the root route must name a default receiver")
    if root.matchers or root.match or root.match_re:
        raise InputError(f"{where}: route", "the root route must not have any matchers")
    if root.continue_:
        raise InputError(f"{where}: route.continue", "the root route cannot continue")
    receivers = _receivers(spec.receivers, where)
    defaults = Route(receiver=root.receiver, group_by=(), group_wait=timedelta(seconds=30),
                     group_interval=timedelta(minutes=5), repeat_interval=timedelta(hours=4), replicas=("",))
    counter = iter(range(MAX_NODES))
    tree = _node(root, defaults, False, "", receivers, counter, f"{where}: route")
    rules = tuple(InhibitRule(_matchers_of(r.source_match, r.source_match_re, r.source_matchers),
                              _matchers_of(r.target_match, r.target_match_re, r.target_matchers),
                              tuple(r.equal)) for r in spec.inhibit_rules)
    return AlertmanagerConfig(tree, receivers, rules, _ignored(spec))


def _receivers(specs: list[ReceiverSpec], where: str) -> dict[str, Receiver]:
    out: dict[str, Receiver] = {}
    for index, spec in enumerate(specs):
        if spec.name in out:
            raise InputError(f"{where}: receivers.{index}.name", f"receiver {spec.name!r} is defined twice")
        configs = spec.integrations()
        first_kind, first = configs[0] if configs else ("", {})
        send_resolved = first.get("send_resolved", SEND_RESOLVED_DEFAULT.get(first_kind, True))
        max_alerts = first.get("max_alerts", 0) if first_kind == "webhook_configs" else 0
        if not isinstance(send_resolved, bool) or not isinstance(max_alerts, int) or max_alerts < 0:
            raise InputError(f"{where}: receivers.{index}.{first_kind}.0",
                             "send_resolved must be true or false and max_alerts a count")
        out[spec.name] = Receiver(spec.name, len(configs), send_resolved, max_alerts)
    return out


def _node(spec: RouteSpec, parent: Route, parent_all: bool, parent_key: str, receivers: dict[str, Receiver],
          counter, where: str) -> RouteNode:
    """A route with its parent's settings where it sets none, and its children built the same way."""
    receiver = spec.receiver or parent.receiver
    if receiver not in receivers:
        raise InputError(f"{where}.receiver", f"undefined receiver {receiver!r} used in route")
    group_all = "..." in spec.group_by if spec.group_by is not None else parent_all
    group_by = tuple(sorted(spec.group_by)) if spec.group_by is not None and not group_all else (
        () if group_all else parent.group_by)
    matchers = _matchers_of(spec.match, spec.match_re, spec.matchers)
    key = (parent_key + "/" if parent_key else "") + "{" + ",".join(str(m) for m in matchers) + "}"
    info = receivers[receiver]
    route = Route(receiver=receiver, group_by=group_by, group_wait=spec.group_wait or parent.group_wait,
                  group_interval=spec.group_interval or parent.group_interval,
                  repeat_interval=spec.repeat_interval or parent.repeat_interval,
                  send_resolved=info.send_resolved, replicas=parent.replicas, replica_delay=parent.replica_delay,
                  path=key, max_alerts=info.max_alerts)
    index = next(counter)
    children = tuple(_node(child, route, group_all, key, receivers, counter, f"{where}.routes.{i}")
                     for i, child in enumerate(spec.routes))
    return RouteNode(index, key, matchers, route, group_all, spec.continue_, children)


def _ignored(spec: ConfigSpec) -> tuple[str, ...]:
    """What the replay does not simulate, so the command can say so."""
    out = []
    if spec.mute_time_intervals or spec.time_intervals:
        out.append("time intervals (mute_time_intervals, active_time_intervals): alerts are never muted by time")
    return tuple(out)
