"""Pattern mining: template extraction, masking config, id stability across restarts, caps."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.patterns import MaskingConfig, MinerConfig, TenantMiner, mask, template_id
from app.patterns.masking import BUILTIN_MASKERS


def test_masks_common_variables() -> None:
    line = ("user a.b@example.com from 10.0.0.1 took 35 ms reading /var/log/app.log id "
            "123e4567-e89b-12d3-a456-426614174000 at 2024-01-01T10:00:00Z addr 0xdeadbeef")
    assert mask(line) == ("user <EMAIL> from <IP> took <NUM> ms reading <PATH> id <UUID> at "
                          "<TS> addr <HEX>")


def test_masking_keeps_words_with_digits() -> None:
    assert mask("ext4 on R02 blk_-42 port:8080") == "ext4 on R02 blk_<NUM> port:<NUM>"


def test_masking_config_turns_maskers_off_and_adds_tenant_maskers() -> None:
    config = MaskingConfig(ips=False, extra=((r"<ORDER>", r"ORD-\d+"),))
    assert mask("order ORD-991 from 10.0.0.1", config) == "order <ORDER> from <NUM>"
    assert mask("from 10.0.0.1", MaskingConfig(ips=False, numbers=False)) == "from 10.0.0.1"
    assert MaskingConfig.from_dict(config.to_dict()) == config


_TOKENS = st.sampled_from([
    "a", "Z", "f", "e", "0", "7", "12", "255", "0x1f", "deadbeef1", "-", "+", ".", "..", ":", "::",
    "/", "~", "@", "_", "=", " ", ",", "<", ">", "é", "T", "2024-01-01", "10:00:00", "://", "x.io",
])


@settings(max_examples=1000, deadline=None)
@given(st.lists(_TOKENS, max_size=40).map("".join), st.booleans(),
       st.fixed_dictionaries({name: st.booleans() for name in BUILTIN_MASKERS}))
def test_masking_matches_the_plain_alternation(text: str, extra: bool,
                                               flags: dict[str, bool]) -> None:
    """The masker checks the token boundary once before the built-in maskers and leaves out
    those that cannot match the text; the result must be what the plain alternation of every
    masker of the configuration (each with its own boundary) gives."""
    config = MaskingConfig(**flags, extra=((r"<ORD>", r"ORD-\d+|e\.f"),) if extra else ())
    parts = [*config.extra, *(spec for name, spec in BUILTIN_MASKERS.items() if flags[name])]
    if not parts:
        assert mask(text, config) == text
        return
    plain = re.compile("|".join(f"(?P<m{i}>{p})" for i, (_, p) in enumerate(parts)))
    expected = plain.sub(lambda m: parts[int(m.lastgroup[1:])][0], text)  # type: ignore[index]
    assert mask(text, config) == expected


def test_bad_tenant_regex_is_refused() -> None:
    with pytest.raises(re.error):
        MaskingConfig(extra=(("<X>", "(unclosed"),)).masker()


def test_template_of_known_lines() -> None:
    miner = TenantMiner()
    first = miner.add("Connection from 10.0.0.1 closed after 35 ms")
    second = miner.add("Connection from 10.0.0.2 closed after 120 ms")
    assert first.is_new and not second.is_new
    assert first.template_id == second.template_id
    assert second.template == "Connection from <IP> closed after <NUM> ms"


def test_template_generalises_and_keeps_its_id() -> None:
    miner = TenantMiner()
    a = miner.add("Invalid user admin from 10.0.0.1")
    b = miner.add("Invalid user oracle from 10.0.0.9")
    assert b.template_id == a.template_id == template_id(
        ["Invalid", "user", "admin", "from", "<IP>"])
    assert b.template == "Invalid user <*> from <IP>" and b.changed and not b.is_new
    c = miner.add("Session closed for root")
    assert c.is_new and c.template_id != a.template_id


def test_different_events_stay_apart() -> None:
    miner = TenantMiner()
    ids = {miner.add(m).template_id for m in (
        "disk full on volume data", "user logged in from console", "disk full on volume logs")}
    assert len(ids) == 2


def test_ids_survive_restart_via_snapshot_and_changelog_records() -> None:
    lines = [f"job {i} finished in {i * 3} ms on worker w{i % 4}" for i in range(50)]
    lines += [f"cache miss for key k{i}" for i in range(20)]
    miner = TenantMiner()
    ids = [miner.add(line, now=float(i)).template_id for i, line in enumerate(lines)]
    changes = miner.take_changes()
    restored = TenantMiner.from_bytes(miner.to_bytes())
    replayed = TenantMiner.restore_records([r for r in changes.values() if r is not None])
    for again in (restored, replayed):
        assert [c.template for c in again.clusters()] == [c.template for c in miner.clusters()]
        assert [again.add(line).template_id for line in lines] == ids
        assert not any(again.add(line).is_new for line in lines)


def test_max_clusters_cap_evicts_least_recently_used() -> None:
    miner = TenantMiner(MinerConfig(max_clusters=3))
    keep = miner.add("alpha event happened")
    for word in ("beta", "gamma", "delta", "epsilon"):
        miner.add(f"{word} thing occurred here now")
        miner.add("alpha event happened")  # keep alpha recent
    assert len(miner) == 3 and miner.evictions == 2
    assert miner.get(keep.template_id) is not None
    changes = miner.take_changes()
    assert sum(1 for v in changes.values() if v is None) == 2


def test_long_messages_are_capped() -> None:
    miner = TenantMiner(MinerConfig(max_tokens=8, max_chars=200))
    m = miner.add(" ".join(f"w{i}x" for i in range(500)))
    assert len(m.template.split(" ")) == 8


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=120), min_size=1, max_size=20))
def test_miner_never_raises_and_state_round_trips(messages: list[str]) -> None:
    miner = TenantMiner(MinerConfig(max_clusters=5))
    ids = [miner.add(m).template_id for m in messages]
    assert all(len(i) == 16 for i in ids) and len(miner) <= 5
    restored = TenantMiner.from_bytes(miner.to_bytes())
    assert [c.to_record() for c in restored.clusters()] == [
        c.to_record() for c in miner.clusters()]
    for m in messages:
        found = restored.match(m)
        assert found is None or found.id in {c.id for c in miner.clusters()}
