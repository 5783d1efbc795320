"""Issue 21, finding 7: weak passwords, the lockout denial of service, forwarded addresses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.accounts import tenancy
from app.accounts.errors import InvalidInput
from app.accounts.passwords import password_problem
from app.settings import load_settings
from tests.auth_fixtures import *  # noqa: F403
from tests.auth_fixtures import PASSWORD, World, client_for, make_settings, running_app
from tests.test_kafka import free_port
from web.app import server_config
from web.proxies import forwarded_client, parse_networks

LOGIN = "/api/v1/auth/login"
REFUSED = ["password", "12345678", " " * 8, "\0" * 8, "Password1!", "P@ssw0rd", "qwertyuiop",
           "aaaaaaaaaaaa", "abcdefgh", "tab\there-long", "short", "x" * 1025]
ACCEPTED = ["correct horse battery", "très sûr, ce mot de passe", "s3cret-password",
            "walking the dog along the river at dawn " * 10]  # 400 characters


@pytest.mark.parametrize("password", REFUSED)
def test_common_and_malformed_passwords_are_refused(password: str) -> None:
    assert password_problem(password) is not None


@pytest.mark.parametrize("password", ACCEPTED)
def test_passphrases_are_accepted(password: str) -> None:
    assert password_problem(password) is None


def test_the_email_is_no_password() -> None:
    with pytest.raises(InvalidInput) as refused:
        tenancy.check_password("carol.smith@acme.test", "carol.smith@acme.test")
    assert refused.value.field == "password"


async def test_weak_passwords_are_refused_when_accounts_are_made(world: World) -> None:
    for password in ("password", "12345678", " " * 8, "\0" * 8):
        with pytest.raises(InvalidInput) as refused:
            async with world.sessions.begin() as session:
                await tenancy.create_user(session, "weak@acme.test", password)
        assert refused.value.field == "password", password


async def test_a_stranger_cannot_lock_the_owner_out(auth_db_url: str, tmp_path: Path) -> None:
    settings = make_settings(auth_db_url, tmp_path / "t", login_delay_after=100,
                             login_account_lockout_after=10)
    async with running_app(settings) as app:
        from tests.auth_fixtures import build_world

        await build_world(app)
        async with client_for(app, "203.0.113.9") as stranger:
            for _ in range(10):
                wrong = await stranger.post(
                    LOGIN, json={"email": "admin@acme.test", "password": "nope-nope"})
                assert wrong.status_code == 401
            locked = await stranger.post(
                LOGIN, json={"email": "admin@acme.test", "password": PASSWORD})
            assert locked.status_code == 429  # the pair is locked, even with the right password
        async with client_for(app, "198.51.100.4") as owner:
            ok = await owner.post(LOGIN, json={"email": "admin@acme.test", "password": PASSWORD})
    assert ok.status_code == 200


async def test_progressive_delays_per_pair(auth_db_url: str, tmp_path: Path) -> None:
    settings = make_settings(auth_db_url, tmp_path / "t", login_delay_after=3)
    async with running_app(settings) as app:
        from tests.auth_fixtures import build_world

        await build_world(app)
        async with client_for(app, "203.0.113.9") as stranger:
            wrong = {"email": "admin@acme.test", "password": "no-no-no"}
            for _ in range(3):
                await stranger.post(LOGIN, json=wrong)
            slowed = await stranger.post(LOGIN, json=wrong)
        assert slowed.status_code == 429 and int(slowed.headers["retry-after"]) >= 1
        async with client_for(app, "198.51.100.4") as owner:
            ok = await owner.post(LOGIN, json={"email": "admin@acme.test", "password": PASSWORD})
    assert ok.status_code == 200


async def test_forwarded_for_from_a_local_caller_is_ignored(
    auth_db_url: str, tmp_path: Path
) -> None:
    # Served as `laas web` serves it (uvicorn, web.app.server_config), with no trusted proxies:
    # a local caller cannot pose as many addresses to dodge the per-address lockout.
    settings = make_settings(auth_db_url, tmp_path / "t", login_address_lockout_after=3)
    async with running_app(settings) as app:
        from tests.auth_fixtures import build_world

        await build_world(app)
        port = free_port()
        server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=port,
                                              lifespan="off", log_level="warning"))
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                assert not serving.done(), "uvicorn did not start"
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as local:
                for n in range(3):
                    wrong = await local.post(
                        LOGIN, json={"email": f"user{n}@acme.test", "password": "nope-nope"},
                        headers={"X-Forwarded-For": f"192.0.2.{n}"})
                    assert wrong.status_code == 401
                blocked = await local.post(
                    LOGIN, json={"email": "admin@acme.test", "password": PASSWORD},
                    headers={"X-Forwarded-For": "192.0.2.200"})
        finally:
            server.should_exit = True
            await serving
    assert blocked.status_code == 429


async def test_trusted_proxy_forwards_the_client_address(
    auth_db_url: str, tmp_path: Path
) -> None:
    settings = make_settings(auth_db_url, tmp_path / "t", login_address_lockout_after=3,
                             trusted_proxies=["10.9.0.0/16"])
    async with running_app(settings) as app:
        from tests.auth_fixtures import build_world

        await build_world(app)
        async with client_for(app, "10.9.0.2") as proxy:
            for n in range(3):  # the attacker behind the proxy is locked out by address ...
                await proxy.post(LOGIN, json={"email": f"u{n}@acme.test", "password": "nope-nope"},
                                 headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.9"})
            blocked = await proxy.post(LOGIN, json={"email": "admin@acme.test",
                                                    "password": PASSWORD},
                                       headers={"X-Forwarded-For": "203.0.113.9"})
            assert blocked.status_code == 429
            # ... and another client through the same proxy is not
            ok = await proxy.post(LOGIN, json={"email": "admin@acme.test", "password": PASSWORD},
                                  headers={"X-Forwarded-For": "198.51.100.4"})
    assert ok.status_code == 200


def test_forwarded_client_picks_the_rightmost_untrusted_hop() -> None:
    nets = parse_networks(["10.0.0.0/8", "::1"])
    assert forwarded_client("127.0.0.1", ["6.6.6.6"], nets) == "127.0.0.1"
    assert forwarded_client("10.0.0.1", ["6.6.6.6, 1.2.3.4, 10.0.0.9"], nets) == "1.2.3.4"
    assert forwarded_client("10.0.0.1", ["10.0.0.3"], nets) == "10.0.0.3"
    assert forwarded_client("10.0.0.1", [], nets) == "10.0.0.1"
    assert forwarded_client("10.0.0.1", ["not-an-ip"], nets) == "10.0.0.1"
    assert forwarded_client("10.0.0.1", ["6.6.6.6"], parse_networks([])) == "10.0.0.1"


def test_trusted_proxies_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        load_settings(trusted_proxies=["proxy.example"])
