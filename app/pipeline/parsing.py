"""Pure parsers for log text: timestamps, severity, plain-line formats, key=value, templates.

No I/O and no clock of their own: functions that need "now" (syslog lines carry no year) take it
as an argument. Every function returns None / empty for input it does not recognise; none raises
on arbitrary text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from app.pipeline.events import MAX_NS, NS

# --- severity ----------------------------------------------------------------------------------

SEVERITIES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SEVERITY_BASES = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
UNKNOWN = "UNKNOWN"
LEVEL_WORDS = {
    "trace": 1, "finest": 1, "finer": 2, "verbose": 3,
    "debug": 5, "dbg": 5, "fine": 5, "d": 5,
    "info": 9, "information": 9, "informational": 9, "notice": 10, "config": 9, "i": 9,
    "warn": 13, "warning": 13, "w": 13,
    "error": 17, "err": 17, "severe": 17, "exception": 17, "e": 17,
    "critical": 21, "crit": 21, "fatal": 21, "alert": 22, "emerg": 23, "emergency": 23,
    "panic": 24, "f": 21,
}
for _name, _base in SEVERITY_BASES.items():
    for _i in range(2, 5):
        LEVEL_WORDS[f"{_name.lower()}{_i}"] = _base + _i - 1
# syslog severities 0-7 → OpenTelemetry numbers
SYSLOG_SEVERITY = (24, 22, 21, 17, 13, 10, 9, 5)


def severity_name(number: int) -> str:
    """The short name of an OpenTelemetry severity number (1-24), UNKNOWN otherwise."""
    if not 1 <= number <= 24:
        return UNKNOWN
    return SEVERITIES[(number - 1) // 4]


def severity_from_text(text: str) -> int:
    """The OpenTelemetry number of a level word (`warning`, `ERROR`, `info3`, `E`), or 0."""
    word = text.strip().strip("[]<>():").lower()
    if word.startswith("severity_number_"):
        word = word.removeprefix("severity_number_")
    if word.isdigit():
        value = int(word)
        return value if 1 <= value <= 24 else 0
    return LEVEL_WORDS.get(word, 0)


def severity_from_value(value: object) -> int:
    """Severity from a JSON value: a level word or an OpenTelemetry number."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value if 1 <= value <= 24 else 0
    if isinstance(value, str):
        return severity_from_text(value)
    return 0


_LEVEL_IN_LINE = re.compile(
    r"(?<![\w.-])\[?(TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERROR|ERR|CRIT(?:ICAL)?|FATAL|SEVERE"
    r"|EMERG|ALERT|PANIC)\]?(?![\w.-])",
    re.IGNORECASE,
)


def severity_in_line(text: str) -> int:
    """The first level word among the first 120 characters of a plain line, or 0."""
    found = _LEVEL_IN_LINE.search(text[:120])
    return severity_from_text(found.group(1)) if found else 0


# --- timestamps --------------------------------------------------------------------------------

def _ns(dt: datetime) -> int | None:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ns = (int(dt.timestamp()) * NS) + dt.microsecond * 1000
    return ns if 0 <= ns < MAX_NS else None


def epoch_to_ns(value: float) -> int | None:
    """Epoch seconds, milliseconds, microseconds or nanoseconds (guessed by magnitude)."""
    if isinstance(value, bool) or not math.isfinite(value) or value < 0:
        return None
    for limit, scale in ((1e11, NS), (1e14, 1_000_000), (1e17, 1000)):
        if value < limit:
            whole = int(value)  # exact for ints; the fraction alone for floats
            ns = whole * scale + round((value - whole) * scale)
            break
    else:
        ns = int(value)
    return ns if ns < MAX_NS else None


_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"\s*(Z|[+-]\d{2}:?\d{2}|UTC|GMT)?",
    re.IGNORECASE,
)


def _tz(text: str | None) -> timezone:
    if not text or text.upper() in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


def _from_parts(year: int, month: int, day: int, hour: int, minute: int, second: int,
                frac: str | None, tz: timezone) -> int | None:
    try:
        dt = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=tz)
    except (ValueError, OverflowError):
        return None
    try:
        ns = _ns(dt)
    except (OverflowError, OSError, ValueError):
        return None
    if ns is None:
        return None
    if frac:
        ns += int(frac.ljust(9, "0")[:9])
    return ns


def parse_iso(text: str) -> int | None:
    """ISO 8601 / RFC 3339 (also `2024-01-15 10:30:45,123` log4j style); no zone means UTC."""
    m = _ISO.fullmatch(text.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    return _from_parts(int(y), int(mo), int(d), int(h), int(mi), int(s), frac, _tz(zone))


def parse_timestamp(value: object) -> int | None:
    """Nanoseconds from an ISO string, a numeric string or an epoch number; None if neither."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return epoch_to_ns(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if len(text) < 40:
            for number in (int, float):
                try:
                    return epoch_to_ns(number(text))
                except ValueError:
                    pass
        return parse_iso(text)
    return None


_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}


def _month(name: str) -> int:
    return _MONTHS.get(name[:3].lower(), 0)


# --- plain lines -------------------------------------------------------------------------------

@dataclass
class LineFields:
    """What a plain line revealed: time, severity, host, service, message and extra fields."""

    format: str
    message: str
    time: int | None = None
    severity: int = 0
    host: str = ""
    service: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


_SYSLOG_5424 = re.compile(
    r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[.*?\])+) ?(.*)", re.DOTALL)
_SYSLOG_3164 = re.compile(
    r"(?:<(\d{1,3})>)?([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\S+) "
    r"([^\s:\[]+)(?:\[(\d+)\])?: ?(.*)", re.DOTALL)
_APACHE_ACCESS = re.compile(
    r'(\S+) (\S+) (\S+) \[(\d{2})/(\w{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\] '
    r'"([^"]*)" (\d{3}) (\S+)(?: "([^"]*)" "([^"]*)")?.*', re.DOTALL)
_APACHE_ERROR = re.compile(
    r"\[\w{3} (\w{3}) (\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d+))? (\d{4})\] "
    r"\[(?:([\w-]+):)?(\w+)\](?: \[pid (\d+)(?::tid \d+)?\])?(?: \[client ([^\]]+)\])? ?(.*)",
    re.DOTALL)
_LOG4J = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)\s+"
    r"(?:\[([^\]]*)\]\s+)?([A-Za-z]{4,8})\s+(?:\[([^\]]*)\]\s+)?(?:([\w.$]+)\s+[-:]\s+)?(.*)",
    re.DOTALL)
_LEADING_ISO = re.compile(
    r"\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?\s?(?:Z|[+-]\d{2}:?\d{2})?)\]?"
    r"\s*(.*)", re.DOTALL)


def _syslog_priority(pri: str | None, fields: LineFields) -> None:
    if pri is not None and int(pri) < 192:
        fields.severity = SYSLOG_SEVERITY[int(pri) % 8]
        fields.attributes["syslog.facility"] = str(int(pri) // 8)


def _syslog_year(month: int, day: int, now_ns: int) -> int:
    """RFC 3164 has no year: the year that puts the line at most a day in the future."""
    now = datetime.fromtimestamp(now_ns / NS, UTC)
    year = now.year
    try:
        if datetime(year, month, day, tzinfo=UTC) > now + timedelta(days=1):
            year -= 1
    except ValueError:
        pass
    return year


def parse_line(line: str, now_ns: int) -> LineFields:
    """Recognise syslog (RFC 5424/3164), Apache access/error, log4j and ISO-prefixed lines.

    Anything else is a plain message (format `text`), with a level word found in it if any.
    """
    text = line.rstrip("\r\n")
    m = _SYSLOG_5424.fullmatch(text)
    if m:
        pri, stamp, host, app, procid, msgid, _sd, msg = m.groups()
        fields = LineFields("syslog", msg, time=parse_iso(stamp),
                            host="" if host == "-" else host, service="" if app == "-" else app)
        _syslog_priority(pri, fields)
        if procid != "-":
            fields.attributes["process.pid"] = procid
        if msgid != "-":
            fields.attributes["syslog.msgid"] = msgid
        return fields
    m = _SYSLOG_3164.fullmatch(text)
    if m and _month(m.group(2)):
        pri, mon, day, hh, mm, ss, host, app, pid, msg = m.groups()
        month = _month(mon)
        year = _syslog_year(month, int(day), now_ns)
        fields = LineFields("syslog", msg, host=host, service=app,
                            time=_from_parts(year, month, int(day), int(hh), int(mm), int(ss),
                                             None, UTC))
        _syslog_priority(pri, fields)
        if pid:
            fields.attributes["process.pid"] = pid
        if pri is None:
            fields.severity = severity_in_line(msg)
        return fields
    m = _APACHE_ACCESS.fullmatch(text)
    if m and _month(m.group(5)):
        (client, _ident, user, day, mon, yr, hh, mm, ss, zone, request, status, size,
         referer, agent) = m.groups()
        fields = LineFields("apache_access", text, time=_from_parts(
            int(yr), _month(mon), int(day), int(hh), int(mm), int(ss), None, _tz(zone)))
        code = int(status)
        fields.severity = 17 if code >= 500 else 13 if code >= 400 else 9
        attrs = {"client.address": client, "http.request": request,
                 "http.response.status_code": status}
        parts = request.split(" ")
        if len(parts) == 3:
            attrs.update({"http.request.method": parts[0], "url.path": parts[1]})
        if user != "-":
            attrs["user.name"] = user
        if size != "-":
            attrs["http.response.body.size"] = size
        if referer and referer != "-":
            attrs["http.request.referer"] = referer
        if agent:
            attrs["user_agent.original"] = agent
        fields.attributes = attrs
        return fields
    m = _APACHE_ERROR.fullmatch(text)
    if m and _month(m.group(1)):
        mon, day, hh, mm, ss, frac, yr, module, level, pid, client, msg = m.groups()
        fields = LineFields("apache_error", msg, time=_from_parts(
            int(yr), _month(mon), int(day), int(hh), int(mm), int(ss), frac, UTC))
        fields.severity = severity_from_text(level)
        if module:
            fields.attributes["apache.module"] = module
        if pid:
            fields.attributes["process.pid"] = pid
        if client:
            fields.attributes["client.address"] = client
        return fields
    m = _LOG4J.fullmatch(text)
    if m and severity_from_text(m.group(3)):
        stamp, thread1, level, thread2, logger, msg = m.groups()
        fields = LineFields("log4j", msg, time=parse_iso(stamp),
                            severity=severity_from_text(level))
        thread = thread1 or thread2
        if thread:
            fields.attributes["thread.name"] = thread
        if logger:
            fields.attributes["log.logger"] = logger
        return fields
    m = _LEADING_ISO.fullmatch(text)
    if m:
        stamp = parse_iso(m.group(1))
        if stamp is not None:
            rest = m.group(2)
            return LineFields("text", rest, time=stamp, severity=severity_in_line(rest))
    return LineFields("text", text, severity=severity_in_line(text))


# --- fields in messages ------------------------------------------------------------------------

# the key's run is possessive (`{0,63}+`): it cannot end in `=`, so giving characters back
# never finds a match, only costs a step per character of every word
_KV = re.compile(r'(?<![\w.\-])([A-Za-z_][\w.\-]{0,63}+)=("((?:[^"\\]|\\.)*)"|[^\s,;]+)')


def key_values(message: str, limit: int = 64) -> dict[str, str]:
    """`key=value` / `key="quoted value"` pairs of a message (at most `limit`)."""
    found: dict[str, str] = {}
    if "=" not in message:
        return found
    for m in _KV.finditer(message[:8192]):
        value = m.group(3) if m.group(3) is not None else m.group(2)
        found[m.group(1)] = value.replace('\\"', '"')
        if len(found) >= limit:
            break
    return found


def json_in_message(message: str) -> dict[str, object] | None:
    """The object of a message that is a JSON object (possibly after a short prefix)."""
    start = message.find("{")
    if start < 0 or start > 64 or not message.rstrip().endswith("}"):
        return None
    try:
        doc = json.loads(message[start:])
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


# --- templates ---------------------------------------------------------------------------------

_MASKS = (
    re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"),
    re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{12,}\b"),
    re.compile(r'"[^"]*"|\'[^\']*\''),
    re.compile(r"[-+]?\d+(?:[.,:]\d+)*"),
)


def template_of(message: str) -> str:
    """The message with variable parts (ids, addresses, numbers, quoted text) masked as `<*>`."""
    text = message[:2048]
    for pattern in _MASKS:
        text = pattern.sub("<*>", text)
    return " ".join(text.split())


def template_id(message: str) -> str:
    """A short stable id of the message's template (16 hex digits)."""
    return hashlib.blake2b(template_of(message).encode(), digest_size=8).hexdigest()
