"""Alert rules over several workers: each counts its share, the tenant's owner sums and judges."""

from __future__ import annotations

from app.pipeline.alerting import Grouper, Rule, RuleCounter, RuleEngine
from app.pipeline.events import NS, LogEvent, RawPosition
from app.query import parse
from app.query.match import compile_predicate


def rule(rule_id: int, condition: str = "above", threshold: int = 5, query: str = "ERROR",
         tenant: str = "1") -> Rule:
    return Rule(rule_id, tenant, f"r{rule_id}", query, 10, condition, threshold, 0,
                compile_predicate(parse(query)))


def event(host: str, message: str = "ERROR payment failed", tenant: str = "1") -> LogEvent:
    return LogEvent(tenant_id=tenant, tenant="t", time=NS, observed_time=NS, severity="ERROR",
                    severity_number=17, message=message, service="api", host=host,
                    raw=RawPosition("logs.raw", 0, 0))


def test_partial_counts_of_two_workers_are_summed() -> None:
    rules = [rule(1, threshold=5)]
    engine = RuleEngine(Grouper(60), grace=3)
    engine.load(rules, now=95.0)  # the window 90..100 is partial: not judged
    workers = [RuleCounter(), RuleCounter()]
    for counter in workers:
        counter.load(rules)
    for i in range(3):  # 3 + 3 matching events in the window 100..110, on two workers
        workers[0].observe(event("a"), now=101.0 + i)
        workers[1].observe(event("b"), now=102.0 + i)
    workers[1].observe(event("b", message="all fine"), now=103.0)  # no match
    for counter in workers:
        for partial in counter.take():
            engine.add(partial)
    assert workers[0].take() == []  # handed out once
    (alert,) = engine.tick(now=104.5)  # above the threshold: fires before the window ends
    assert alert["rule_id"] == 1 and alert["score"] == 6.0  # neither worker alone is > 5
    assert alert["window"]["start"].startswith("1970-01-01T00:01:40")
    assert len(alert["samples"]) == 5
    engine.add({"tenant_id": "1", "rule_id": 1, "start": 100.0, "count": 4, "samples": []})
    assert engine.late == 1 and engine.tick(now=106.0) == []  # counted, not fired twice


def test_an_above_rule_fires_when_late_counts_pass_the_threshold() -> None:
    engine = RuleEngine(Grouper(60), grace=3)
    engine.load([rule(4, threshold=5)], now=95.0)
    engine.add({"tenant_id": "1", "rule_id": 4, "start": 100.0, "count": 3, "samples": []})
    assert engine.tick(now=120.0) == []
    engine.add({"tenant_id": "1", "rule_id": 4, "start": 100.0, "count": 3, "samples": []})
    (alert,) = engine.tick(now=125.0)  # a slow worker's share, 15 s after the window ended
    assert alert["score"] == 6.0


def test_below_rules_fire_on_silence_only_where_the_tenant_is_owned() -> None:
    rules = [rule(2, condition="below", threshold=1, query="*")]
    owner, other = RuleEngine(Grouper(60), grace=3), RuleEngine(Grouper(60), grace=3)
    for engine in (owner, other):
        engine.load(rules, now=95.0)
        engine.tick(now=104.0)  # the partial first window
    assert other.tick(now=114.0, owns=lambda tenant: False) == []
    (alert,) = owner.tick(now=114.0, owns=lambda tenant: tenant == "1")
    assert alert["score"] == 0.0 and alert["condition"] == "below"


def test_partial_first_windows_of_edited_rules_and_unknown_rules_are_ignored() -> None:
    engine = RuleEngine(Grouper(60), grace=3)
    engine.load([rule(3)], now=85.0)
    engine.load([rule(3, query="ERROR AND payment")], now=95.0)  # edited: 90..100 is partial
    engine.add({"tenant_id": "1", "rule_id": 3, "start": 90.0, "count": 9, "samples": []})
    engine.add({"tenant_id": "1", "rule_id": 99, "start": 100.0, "count": 9, "samples": []})
    assert engine.tick(now=113.5) == [] and not engine.windows


def test_a_new_above_rule_judges_the_window_it_was_loaded_in() -> None:
    engine = RuleEngine(Grouper(60), grace=3)
    engine.load([rule(6)], now=95.0)  # a worker starting on a backlog with a burst in it
    engine.add({"tenant_id": "1", "rule_id": 6, "start": 90.0, "count": 9, "samples": []})
    (alert,) = engine.tick(now=96.0)
    assert alert["rule_id"] == 6 and alert["score"] == 9.0


def test_a_late_count_does_not_undo_a_below_judgement() -> None:
    engine = RuleEngine(Grouper(60), grace=3)
    engine.load([rule(5, condition="below", threshold=1, query="*")], now=95.0)
    (alert,) = engine.tick(now=113.5)
    engine.add({"tenant_id": "1", "rule_id": 5, "start": 100.0, "count": 2, "samples": []})
    assert engine.late == 1 and engine.tick(now=114.0) == []


def test_restored_groups_and_cooldowns_continue_after_a_restart() -> None:
    from app.anomaly import Finding
    from app.pipeline.alerting import anomaly_alert, restore

    # before the restart: a rule alert (cooldown 100 s) and an anomaly alert were stored
    before = RuleEngine(Grouper(300), grace=0)
    cooled = Rule(2, "1", "r2", "ERROR", 10, "above", 5, 100, compile_predicate(parse("ERROR")))
    grouped = rule(3)  # no cooldown
    before.load([cooled, grouped], now=95.0)
    for rule_id in (2, 3):
        before.add({"rule_id": rule_id, "start": 100.0, "count": 9, "samples": []})
    stored = before.tick(now=104.0)
    assert {a["rule_id"] for a in stored} == {2, 3}
    finding = Finding("error_burst", "1/api/h1", 100.0, 110.0, 9.0, 1.0,
                      {"count": 9.0, "count_error": 9.0}, {})
    stored.append(anomaly_alert(before.grouper, finding, now=110.0))

    # a new worker restores them, then the same conditions fire again within the group window
    grouper = Grouper(300)
    after = RuleEngine(grouper, grace=0)
    assert restore(grouper, after, [*stored, {"kind": "rule", "id": "x"}]) == 3  # bad doc skipped
    after.load([cooled, grouped], now=125.0)
    for rule_id in (2, 3):
        after.add({"rule_id": rule_id, "start": 130.0, "count": 9, "samples": []})
    (again,) = after.tick(now=134.0)  # rule 2 is still in its cooldown: only rule 3 fires
    first = {a["rule_id"]: a for a in stored}
    assert again["rule_id"] == 3 and again["id"] == first[3]["id"]
    assert again["occurrences"] == 2 and again["first_fired"] == first[3]["first_fired"]
    repeat = anomaly_alert(grouper, finding, now=140.0)
    assert repeat["id"] == stored[-1]["id"] and repeat["occurrences"] == 2
