"""web/ui.py: the built UI at `/`, cache headers, client-side routes, API paths left alone."""

from __future__ import annotations

from pathlib import Path

from tests.auth_fixtures import client_for, make_settings, running_app


async def test_serves_build_with_cache_headers(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><div id=root></div>")
    (dist / "assets" / "index-abc123.js").write_text("console.log(1)")
    (dist / "favicon.svg").write_text("<svg/>")
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'u.db'}", tmp_path / "state")
    async with running_app(settings) as app:
        app.state.ui_dist = dist
        async with client_for(app) as client:
            for path in ("/", "/explore", "/settings/keys", "/explore?q=level:error"):
                page = await client.get(path)
                assert page.status_code == 200, path
                assert "id=root" in page.text
                assert page.headers["cache-control"] == "no-cache"
            js = await client.get("/assets/index-abc123.js")
            assert js.status_code == 200
            assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert "javascript" in js.headers["content-type"]
            assert (await client.get("/favicon.svg")).text == "<svg/>"
            assert (await client.get("/assets/missing.js")).status_code == 404
            assert (await client.get("/assets/..%2Findex.html")).status_code == 404
            # the API and other endpoints never get index.html
            assert (await client.get("/api/v1/nothing")).status_code == 404
            assert (await client.get("/api/v1/me")).status_code == 401
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/metrics")).headers.get("cache-control") != "no-cache"


async def test_missing_build_answers_503_with_instructions(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'u.db'}", tmp_path / "state")
    async with running_app(settings) as app:
        app.state.ui_dist = tmp_path / "nowhere"
        async with client_for(app) as client:
            page = await client.get("/")
            assert page.status_code == 503
            assert "bash deploy/bootstrap.sh install" in page.text
            assert (await client.get("/explore")).status_code == 503
