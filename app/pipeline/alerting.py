"""Alerts as pure functions: the alert document, grouping of repeated firings, rule windows,
webhook signatures (Standard Webhooks), and the `{index_prefix}alerts` index layout.

An alert is JSON on the `alerts` topic (key: tenant id). Repeated firing of one condition
(same tenant, kind and source for anomalies; same rule for rules) within
`alert_group_seconds` of its last firing re-sends the *same* alert id with `occurrences`
incremented and the latest evidence, so consumers upsert by id instead of piling up alerts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.anomaly import Finding
from app.pipeline.events import NS, LogEvent, iso_nanos
from app.pipeline.parsing import parse_iso
from app.settings import Settings

# Deprecated, kept because docs/analytics.md promised it: "sha256=<hex HMAC-SHA256 of the body
# with the secret's UTF-8 bytes>"; it signs no timestamp, so a captured delivery can be replayed.
SIGNATURE_HEADER = "X-LaaS-Signature"
SECRET_PREFIX = "whsec_"  # Standard Webhooks secrets: the prefix and the key in base64
STATUSES = ("open", "acknowledged", "resolved")
KINDS = ("anomaly", "rule")

ALERTS_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "id": {"type": "keyword"},
        "tenant_id": {"type": "keyword"},
        "kind": {"type": "keyword"},
        "detector": {"type": "keyword"},
        "rule_id": {"type": "keyword"},
        "source": {"type": "keyword"},
        "status": {"type": "keyword"},
        "title": {"type": "text"},
        "first_fired": {"type": "date"},
        "last_fired": {"type": "date"},
        "occurrences": {"type": "integer"},
    },
}

# Upsert of a firing: new evidence wins; a resolved alert firing again is open again; an
# acknowledgement is kept.
ALERT_ID = re.compile(r"[0-9a-f]{20}")  # the ids the grouper below makes (blake2b, 10 bytes)


def merge_alert(stored: dict[str, Any] | None, alert: dict[str, Any]) -> dict[str, Any]:
    """A repeated firing over the stored alert: new evidence wins, an acknowledgement is
    kept, a resolved alert re-opens (takes the firing's status)."""
    if stored is None:
        return alert
    merged = {**stored, **alert}
    status = stored.get("status")
    if status is not None and status != "resolved":
        merged["status"] = status
    return merged


def alerts_index(settings: Settings) -> str:
    return f"{settings.index_prefix}alerts"


def sign(secret: str, body: bytes) -> str:
    """The deprecated `X-LaaS-Signature` value of a webhook body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def new_webhook_secret() -> str:
    """A webhook secret in the Standard Webhooks form: `whsec_` and 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64 after `whsec_`, or (secrets made before that
    form) the secret's UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (Standard Webhooks): `v1,` and the base64 HMAC-SHA256
    of `{id}.{timestamp}.{body}`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(secret: str, msg_id: str, body: bytes, now: float) -> dict[str, str]:
    """The signature headers of one delivery attempt signed at `now` (unix seconds): the
    Standard Webhooks `webhook-id`, `webhook-timestamp`, `webhook-signature`, and the
    deprecated `X-LaaS-Signature`."""
    timestamp = int(now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard(secret, msg_id, timestamp, body),
        SIGNATURE_HEADER: sign(secret, body),
    }


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def source_query(source: str, detector: str, template_ids: tuple[str, ...] = ()) -> str:
    """A search query showing a finding's events (source `tenant/service/host`)."""
    _, service, host = (source.split("/", 2) + ["", ""])[:3]
    parts = [f"service:{_quote(service)}"]
    if host:
        parts.append(f"host:{_quote(host)}")
    if detector == "new_error_template" and template_ids:
        parts.append("(" + " OR ".join(f"template:{t}" for t in template_ids) + ")")
    elif detector == "error_burst":
        parts.append("level:>=error")
    return " AND ".join(parts)


def _clean(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


@dataclass
class Group:
    id: str
    first: float
    last: float
    occurrences: int = 0


class Grouper:
    """Open alert groups by condition key; a firing within `window` seconds of the group's
    last one joins it. Bounded: groups idle for `window` are forgotten."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.groups: dict[str, Group] = {}

    def fire(self, key: str, now: float) -> Group:
        group = self.groups.get(key)
        if group is None or now - group.last > self.window:
            ident = hashlib.blake2b(f"{key}|{now!r}".encode(), digest_size=10).hexdigest()
            group = self.groups[key] = Group(ident, now, now)
        group.last = now
        group.occurrences += 1
        if len(self.groups) > 10_000:
            self.groups = {k: g for k, g in self.groups.items() if now - g.last <= self.window}
        return group


def _base(group: Group, tenant_id: str, kind: str, title: str) -> dict[str, Any]:
    return {"id": group.id, "tenant_id": tenant_id, "kind": kind, "title": title,
            "status": "open", "occurrences": group.occurrences,
            "first_fired": iso_nanos(int(group.first * NS)),
            "last_fired": iso_nanos(int(group.last * NS))}


def anomaly_alert(grouper: Grouper, finding: Finding, now: float) -> dict[str, Any]:
    """The alert of a detector finding (grouped by tenant and source)."""
    tenant_id = finding.source.split("/", 1)[0]
    group = grouper.fire(f"{tenant_id}|anomaly|{finding.source}", now)
    doc = _base(group, tenant_id, "anomaly", finding.summary)
    query = source_query(finding.source, finding.detector, finding.template_ids)
    doc.update({
        "detector": finding.detector, "rule_id": None, "source": finding.source,
        "window": {"start": iso_nanos(int(finding.window_start * NS)),
                   "end": iso_nanos(int(finding.window_end * NS))},
        "score": _clean(float(finding.score)), "threshold": _clean(float(finding.threshold)),
        "features": {k: _clean(float(v)) for k, v in finding.features.items()},
        "baseline": {k: _clean(float(v)) for k, v in finding.baseline.items()},
        "samples": [{"template_id": s.template_id, "severity": s.severity,
                     "message": s.message[:2000]} for s in finding.samples],
        "query": query,
        "search": {"q": query, "since": iso_nanos(int(finding.window_start * NS)),
                   "until": iso_nanos(int(finding.window_end * NS))},
    })
    return doc


# -- user rules ----------------------------------------------------------------------------------

@dataclass
class Rule:
    """A compiled alert rule (from the `alert_rules` table)."""

    id: int
    tenant_id: str
    name: str
    query: str
    window: int
    condition: str  # above | below
    threshold: int
    cooldown: int
    predicate: Callable[[dict[str, object]], bool]


@dataclass
class RuleWindow:
    start: float
    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    judged: bool = False


class RuleCounter:
    """One worker's share of the rule counts: events matching each rule per tumbling window
    (arrival time, aligned to multiples of the rule's window), handed out as partial counts
    that the tenant's `RuleEngine` sums (a tenant's sources are spread over workers)."""

    def __init__(self) -> None:
        self.by_tenant: dict[str, list[Rule]] = {}
        self.windows: dict[tuple[int, float], RuleWindow] = {}

    def load(self, rules: list[Rule]) -> None:
        self.by_tenant = {}
        for rule in rules:
            self.by_tenant.setdefault(rule.tenant_id, []).append(rule)

    def observe(self, event: LogEvent, now: float) -> None:
        rules = self.by_tenant.get(event.tenant_id)
        if not rules:
            return
        fields = event.__dict__
        for rule in rules:
            if rule.predicate(fields):
                start = now - now % rule.window
                window = self.windows.setdefault((rule.id, start), RuleWindow(start))
                window.count += 1
                if len(window.samples) < 5:
                    window.samples.append({"severity": event.severity, "service": event.service,
                                           "host": event.host, "message": event.message[:2000],
                                           "template_id": event.template_id})

    def take(self) -> list[dict[str, Any]]:
        """The partial counts gathered since the last call (`rule-counts` messages)."""
        tenant_of = {r.id: r.tenant_id for rs in self.by_tenant.values() for r in rs}
        out = [{"tenant_id": tenant_of[rule_id], "rule_id": rule_id, "start": w.start,
                "count": w.count, "samples": w.samples}
               for (rule_id, _), w in self.windows.items() if rule_id in tenant_of]
        self.windows = {}
        return out


class RuleEngine:
    """Judges the rules of the tenants it owns from the partial counts of every worker, per
    tumbling window (aligned to multiples of the rule's window). An "above" rule fires as soon
    as a window's sum passes the threshold (partial counts arriving late still count); a
    "below" rule is judged `grace` seconds after its window ended (a count arriving later than
    that is counted in `late`). The first (partial) window after a rule is loaded is not
    judged, except for an above-rule new to this engine."""

    def __init__(self, grouper: Grouper, grace: float = 0.0) -> None:
        self.grouper = grouper
        self.grace = grace
        self.by_tenant: dict[str, list[Rule]] = {}
        self.loaded: dict[int, float] = {}  # start of the partial window the rule loaded in
        self.next_start: dict[int, float] = {}  # a below-rule's oldest window not judged yet
        self.windows: dict[tuple[int, float], RuleWindow] = {}
        self.last_fired: dict[int, float] = {}
        self.late = 0

    def load(self, rules: list[Rule], now: float) -> None:
        """Replace the rule set; unchanged rules keep their open windows."""
        old = {r.id: r for rs in self.by_tenant.values() for r in rs}
        by_tenant: dict[str, list[Rule]] = {}
        for rule in rules:
            by_tenant.setdefault(rule.tenant_id, []).append(rule)
            prev = old.get(rule.id)
            if prev is None or (prev.query, prev.window, prev.condition) != \
                    (rule.query, rule.window, rule.condition):
                current = now - now % rule.window
                self.next_start[rule.id] = current + rule.window
                # The partial window the rule is loaded in: a count in it is low, which can
                # only make a below-rule fire wrongly, and after an edit it may mix shares
                # counted with the old query; a new above-rule counts it (a burst read right
                # at a worker's start would be missed otherwise).
                fresh_above = prev is None and rule.condition == "above"
                self.loaded[rule.id] = current - rule.window if fresh_above else current
                self.windows = {k: w for k, w in self.windows.items() if k[0] != rule.id}
        gone = set(old) - {r.id for r in rules}
        for rule_id in gone:
            self.loaded.pop(rule_id, None)
            self.next_start.pop(rule_id, None)
            self.last_fired.pop(rule_id, None)
        self.windows = {k: w for k, w in self.windows.items() if k[0] not in gone}
        self.by_tenant = by_tenant

    def add(self, partial: dict[str, Any]) -> None:
        """Sum one worker's partial count into its window."""
        rule_id, start = int(partial["rule_id"]), float(partial["start"])
        if rule_id not in self.loaded or start <= self.loaded[rule_id]:
            return  # a rule this engine does not know (yet), or its partial first window
        window = self.windows.setdefault((rule_id, start), RuleWindow(start))
        if window.judged:
            self.late += 1
        window.count += int(partial["count"])
        window.samples = (window.samples + list(partial.get("samples") or []))[:5]

    def tick(self, now: float, owns: Callable[[str], bool] = lambda tenant: True
             ) -> list[dict[str, Any]]:
        """Judge the owned tenants' rules; the alerts that fired."""
        out = []
        for tenant, rules in self.by_tenant.items():
            if not owns(tenant):
                continue
            for rule in rules:
                for window in self._due(rule, now):
                    window.judged = True
                    fired = window.count > rule.threshold if rule.condition == "above" \
                        else window.count < rule.threshold
                    if fired and now - self.last_fired.get(rule.id, -math.inf) >= rule.cooldown:
                        self.last_fired[rule.id] = now
                        out.append(self._alert(rule, window, window.start + rule.window, now))
        keep = max(60.0, self.grace)  # windows stay this long after their end for late counts
        size = {r.id: r.window for rs in self.by_tenant.values() for r in rs}
        self.windows = {k: w for k, w in self.windows.items()
                        if k[0] in size and k[1] + size[k[0]] + keep > now}
        return out

    def _due(self, rule: Rule, now: float) -> list[RuleWindow]:
        if rule.condition == "above":  # any window already above its threshold
            return [w for (rule_id, _), w in self.windows.items()
                    if rule_id == rule.id and not w.judged and w.count > rule.threshold]
        start = self.next_start[rule.id]
        if start + rule.window + self.grace > now:
            return []
        current = now - now % rule.window  # after a long pause judge the last window only
        start = max(start, current - rule.window)
        self.next_start[rule.id] = start + rule.window
        return [self.windows.setdefault((rule.id, start), RuleWindow(start))]

    def _alert(self, rule: Rule, window: RuleWindow, end: float, now: float) -> dict[str, Any]:
        group = self.grouper.fire(f"{rule.tenant_id}|rule|{rule.id}", now)
        title = (f"rule {rule.name!r}: {window.count} events in {rule.window}s "
                 f"({rule.condition} {rule.threshold})")
        doc = _base(group, rule.tenant_id, "rule", title)
        doc.update({
            "detector": None, "rule_id": rule.id, "source": None,
            "window": {"start": iso_nanos(int(window.start * NS)), "end": iso_nanos(int(end * NS))},
            "score": float(window.count), "threshold": float(rule.threshold),
            "features": {"count": window.count}, "baseline": {},
            "condition": rule.condition, "samples": window.samples, "query": rule.query,
            "search": {"q": rule.query, "since": iso_nanos(int(window.start * NS)),
                       "until": iso_nanos(int(end * NS))},
        })
        return doc


def restore(grouper: Grouper, engine: RuleEngine, alerts: Iterable[dict[str, Any]]) -> int:
    """Rebuild alert groups and rule cooldowns from stored alerts (the alerts index) after a
    restart: a condition that keeps firing then joins its open alert instead of opening a second
    one, and a rule in its cooldown stays quiet. Returns how many groups were restored;
    documents without the needed fields are skipped."""
    restored = 0
    for alert in alerts:
        try:
            first, last = (parse_iso(str(alert[k])) for k in ("first_fired", "last_fired"))
            if first is None or last is None:
                continue
            tenant = str(alert["tenant_id"])
            if alert["kind"] == "rule":
                rule_id = int(alert["rule_id"])
                key = f"{tenant}|rule|{rule_id}"
                engine.last_fired[rule_id] = max(engine.last_fired.get(rule_id, -math.inf),
                                                 last / NS)
            else:
                key = f"{tenant}|anomaly|{alert['source']}"
            group = Group(str(alert["id"]), first / NS, last / NS, int(alert["occurrences"]))
        except (KeyError, TypeError, ValueError):
            continue
        have = grouper.groups.get(key)
        if have is None or have.last < group.last:
            grouper.groups[key] = group
            restored += 1
    return restored


def encode(alert: dict[str, Any]) -> bytes:
    return json.dumps(alert, separators=(",", ":"), ensure_ascii=False).encode()
