"""Field conventions of common log shippers, mapped onto the LaaS shorthand record.

One place for every JSON-ish entry point (`POST /api/v1/logs` NDJSON/JSON, Elasticsearch
`_bulk`, Loki push): a shipper's document or a Loki stream's labels become the shorthand that
`app.ingest.jsonpb.pb_record_from_json` reads (`message`, `level`, `ts`, `service`, `host`,
`attributes`). Nothing is dropped: a key that is not lifted into a record field stays an
attribute. The mapping is documented in docs/ingest.md (*Shipper field conventions*).
"""

from __future__ import annotations

from typing import Any

from app.ingest.jsonpb import RECORD_KEYS

# Keys that make a document worth a look; any other document is passed through untouched.
DOCUMENT_KEYS = frozenset({"log", "@timestamp", "log.level", "severity", "levelname",
                           "hostname", "host.name", "service.name", "kubernetes"})
# Loki stream labels lifted into record fields, first present wins (the rest stay attributes).
SERVICE_LABELS = ("service_name", "service", "app", "application", "job")
HOST_LABELS = ("host", "hostname", "instance")
LEVEL_LABELS = ("level", "detected_level", "severity")
# OpenTelemetry's Kubernetes attribute names for what shippers call pod, namespace, ...
# (Fluent Bit's kubernetes filter, Vector's kubernetes_logs, Filebeat's add_kubernetes_metadata,
# Promtail's default labels).
K8S_FIELDS: dict[str, tuple[str, ...]] = {
    "k8s.pod.name": ("pod_name", "pod.name", "pod"),
    "k8s.namespace.name": ("namespace_name", "pod_namespace", "namespace"),
    "k8s.container.name": ("container_name", "container.name", "container"),
    "k8s.node.name": ("pod_node_name", "node.name", "host"),
    "k8s.pod.uid": ("pod_id", "pod_uid", "pod.uid"),
}
K8S_APP_LABELS = ("app.kubernetes.io/name", "app", "k8s-app")


def shipper_document(doc: Any) -> Any:
    """A shipper's JSON document as the LaaS shorthand (a new dict; `doc` is not changed).

    Lifted when the record field is not given already:
    message ← `log` (a string: Fluent Bit, Docker); time ← `@timestamp` (Beats, Logstash,
    Vector, Fluent Bit's es output), ahead of `timestamp`/`time`; level ← `log.level` (dotted
    or nested, ECS), `severity` (a string), `levelname` (Python); host ← `host.name`,
    `host: {"name"}` (ECS), `hostname`; service ← `service.name` / `service: {"name"}` (ECS),
    then Kubernetes metadata (`kubernetes.labels.app`, ..., else the container name).
    A `kubernetes` object gives the attributes `k8s.pod.name`, `k8s.namespace.name`,
    `k8s.container.name`, `k8s.node.name`, `k8s.pod.uid`; what else it holds stays under the
    attribute `kubernetes`. The full proto3 JSON form and non-objects are returned as they are.
    """
    if type(doc) is not dict or doc.keys().isdisjoint(DOCUMENT_KEYS) and not _nested(doc):
        return doc
    if doc.keys() <= RECORD_KEYS:
        return doc  # the full form: its fields mean what the schema says
    out = dict(doc)
    log = out.get("log")
    if isinstance(log, str) and "message" not in out and "msg" not in out:
        out["message"] = out.pop("log")
    elif isinstance(log, dict) and "level" not in out and isinstance(log.get("level"), str):
        rest = dict(log)
        out["level"] = rest.pop("level")
        _put(out, "log", rest)
    if "@timestamp" in out and "ts" not in out:
        out["ts"] = out.pop("@timestamp")
    if "level" not in out:
        for key in ("log.level", "severity", "levelname"):
            if isinstance(out.get(key), str):
                out["level"] = out.pop(key)
                break
    _lift_named(out, "host", ("host.name", "hostname"))
    _lift_named(out, "service", ("service.name",))
    kube = out.get("kubernetes")
    if isinstance(kube, dict) and isinstance(out.get("attributes", {}), dict):
        attrs = _attributes(out)
        rest, found = kubernetes_attributes(kube, keep=attrs.keys())
        attrs.update(found)
        _put(out, "kubernetes", rest)
        if "service" not in out and (service := kubernetes_service(kube)):
            out["service"] = service
        if "host" not in out and isinstance(found.get("k8s.node.name"), str):
            out["host"] = found["k8s.node.name"]
    return out


def _nested(doc: dict[str, Any]) -> bool:
    """An ECS object (`host: {...}`, `service: {...}`) that needs lifting."""
    return type(doc.get("host")) is dict or type(doc.get("service")) is dict


def _put(out: dict[str, Any], key: str, rest: dict[str, Any]) -> None:
    """Keep what is left of an object under `key`, or drop the key when nothing is left."""
    if rest:
        out[key] = rest
    else:
        out.pop(key, None)


def _attributes(out: dict[str, Any]) -> dict[str, Any]:
    """The document's `attributes` object (a copy, set back into `out`)."""
    attrs = out.get("attributes")
    attrs = dict(attrs) if isinstance(attrs, dict) else {}
    if "attributes" in out and not isinstance(out["attributes"], dict):
        return attrs  # a wrong type: left for the converter to refuse by name
    out["attributes"] = attrs
    return attrs


def _lift_named(out: dict[str, Any], field: str, dotted: tuple[str, ...]) -> None:
    """`field` from an ECS object `{field: {"name": ...}}` or a dotted/alias key."""
    value = out.get(field)
    if isinstance(value, dict):
        attrs = out.get("attributes", {})
        if not isinstance(attrs, dict) or field in attrs:
            return  # nowhere to keep the rest: the converter refuses the object by name
        rest = dict(value)
        keys = ("name", "hostname") if field == "host" else ("name",)
        name = next((rest.pop(k) for k in keys if isinstance(rest.get(k), str)), None)
        if isinstance(name, str):
            out[field] = name
        else:
            del out[field]
        if rest:
            _attributes(out).setdefault(field, rest)
        return
    if value is not None:
        return
    for key in dotted:
        if isinstance(out.get(key), str):
            out[field] = out.pop(key)
            return


def _path(values: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str] | None:
    """The object holding `a.b` (`values["a"]`, key "b") or `a` itself, if it is there."""
    head, _, tail = dotted.partition(".")
    if not tail:
        return (values, head) if head in values else None
    inner = values.get(head)
    return (inner, tail) if isinstance(inner, dict) and tail in inner else None


def kubernetes_attributes(kube: dict[str, Any], keep: Any = ()) -> tuple[dict[str, Any],
                                                                        dict[str, Any]]:
    """Split a shipper's `kubernetes` object into what is left and the `k8s.*` attributes
    (none of the names in `keep`, which the record has already)."""
    rest = {k: dict(v) if isinstance(v, dict) else v for k, v in kube.items()}
    found: dict[str, Any] = {}
    for name, keys in K8S_FIELDS.items():
        if name in keep:
            continue
        for key in keys:
            at = _path(rest, key)
            if at is None or not isinstance(at[0][at[1]], str):
                continue
            found[name] = at[0].pop(at[1])
            head = key.partition(".")[0]
            if isinstance(rest.get(head), dict) and not rest[head]:
                del rest[head]
            break
    return rest, found


def kubernetes_service(kube: dict[str, Any]) -> str | None:
    """The service of a Kubernetes record: an app label, else the container's name."""
    for labels_key in ("labels", "pod_labels"):
        labels = kube.get(labels_key)
        if isinstance(labels, dict):
            for label in K8S_APP_LABELS:
                if isinstance(labels.get(label), str) and labels[label]:
                    return str(labels[label])
    for key in K8S_FIELDS["k8s.container.name"]:
        at = _path(kube, key)
        if at is not None and isinstance(at[0][at[1]], str) and at[0][at[1]]:
            return str(at[0][at[1]])
    return None


def labels_record(labels: dict[str, str]) -> dict[str, Any]:
    """A Loki stream's labels as the shorthand fields of its entries (no message, no time).

    service ← the first of `service_name`, `service`, `app`, `application`, `job`;
    host ← `host`, `hostname`, `instance`; level ← `level`, `detected_level`, `severity`;
    `pod`, `namespace`, `container` (Promtail's Kubernetes labels) ← `k8s.pod.name`,
    `k8s.namespace.name`, `k8s.container.name`, the container also the service when no label
    above names one. Every other label is an attribute under its own name.
    """
    attrs = dict(labels)
    out: dict[str, Any] = {}
    for field, names in (("service", SERVICE_LABELS), ("host", HOST_LABELS),
                         ("level", LEVEL_LABELS)):
        for name in names:
            if attrs.get(name):
                out[field] = attrs.pop(name)
                break
    for label, name in (("pod", "k8s.pod.name"), ("namespace", "k8s.namespace.name"),
                        ("container", "k8s.container.name")):
        if label in attrs and name not in attrs:
            attrs[name] = attrs.pop(label)
    if "service" not in out and attrs.get("k8s.container.name"):
        out["service"] = attrs["k8s.container.name"]
    out["attributes"] = attrs
    return out
