"""Hosted mode over S3 (issue 8: "two collectors, one S3-compatible bucket,
end to end"): two real micrologd processes in hosted mode (tokens) share
one bucket of a real moto server. A run that team X's client sends to
collector A is listed and served by collector B to team X's tokens only;
team Y never learns it exists; a DELETE through B removes it from the
bucket and from A."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from conftest import start_collector, wait_for
from test_hosted import TOK_A, TOK_A_READ, TOK_ADMIN, TOK_B, TOKENS, http, profile, runs_of
from test_s3 import BUCKET, PREFIX, Moto, finish, moto, moto_port, s3_env  # noqa: F401

pytest.importorskip("boto3", reason="boto3 (with moto[server]) is needed for S3 tests")


def hosted_pair(tmp_path: Path):
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    a = start_collector(tmp_path / "a", "--tokens", str(tokens), "--collector-id", "1",
                        "--s3-list-interval", "0.5")
    b = start_collector(tmp_path / "b", "--tokens", str(tokens), "--collector-id", "2",
                        "--s3-list-interval", "0.5")
    return a, b


def keys_of(moto: Moto, team: str, rid: str) -> list[str]:  # noqa: F811
    return [f"{PREFIX}/runs/{team}/{rid}/recording.mlr", f"{PREFIX}/runs/{team}/{rid}/run.json"]


def test_two_hosted_collectors_one_bucket(tmp_path: Path, moto: Moto,  # noqa: F811
                                          s3_env: None) -> None:  # noqa: F811
    moto.start()
    a, b = hosted_pair(tmp_path)
    try:
        # Team X (team-a) records through A, team Y (team-b) through B.
        assert profile(a, tmp_path, TOK_A, label="xjob").returncode == 3
        assert profile(b, tmp_path, TOK_B, label="yjob").returncode == 3
        (x,) = wait_for(lambda: [r for r in runs_of(a, TOK_A) if r["status"] == "complete"], 30)
        (y,) = wait_for(lambda: [r for r in runs_of(b, TOK_B) if r["status"] == "complete"], 30)
        assert x["team"] == "team-a" and y["team"] == "team-b"
        assert wait_for(lambda: set(keys_of(moto, "team-a", x["id"]) +
                                    keys_of(moto, "team-b", y["id"])) <= set(moto.keys()), 30)

        # B lists and serves team X's run to team X (write and read tokens)...
        assert wait_for(lambda: x["id"] in {r["id"] for r in runs_of(b, TOK_A)}, 30)
        assert wait_for(lambda: y["id"] in {r["id"] for r in runs_of(a, TOK_B)}, 30)
        path = b.run_path(x["id"])
        for ep in ("", "/flamegraph", "/log", "/export?format=collapsed"):
            sa, body_a, _ = http(a.http + path + ep, token=TOK_A)
            sb, body_b, _ = http(b.http + path + ep, token=TOK_A_READ)
            assert sa == sb == 200, (ep, sa, sb, body_b)
            if ep:  # metadata differs in "remote" only; data is the same
                assert body_a == body_b, ep
        meta = json.loads(http(b.http + path, token=TOK_A)[1])
        assert meta["remote"] is True and meta["team"] == "team-a"
        assert "hello from the profiled program" in http(b.http + path + "/log", token=TOK_A)[1].decode()
        # ...and not to team Y: not listed, every route 404 as for no run.
        assert x["id"] not in {r["id"] for r in runs_of(b, TOK_B)}
        for ep in ("", "/flamegraph", "/log", "/export?format=collapsed", "/live"):
            assert http(b.http + path + ep, token=TOK_B)[0] == 404, ep
        assert http(b.http + path, "DELETE", token=TOK_B)[0] == 404
        base = urllib.parse.quote(x["id"], safe="")
        assert http(b.http + b.run_path(y["id"]) + "/diff?base=" + base, token=TOK_B)[0] == 404
        # No token, a read token: no deletes either.
        assert http(b.http + path, "DELETE")[0] == 401
        assert http(b.http + path, "DELETE", token=TOK_A_READ)[0] == 403
        # The admin sees both teams on both collectors.
        for c in (a, b):
            assert {x["id"], y["id"]} <= {r["id"] for r in runs_of(c, TOK_ADMIN)}

        # DELETE through B (which did not ingest it) removes it everywhere.
        assert http(b.http + path, "DELETE", token=TOK_A)[0] == 204
        assert wait_for(lambda: not set(keys_of(moto, "team-a", x["id"])) & set(moto.keys()), 30)
        assert wait_for(lambda: x["id"] not in {r["id"] for r in runs_of(a, TOK_A)}, 30)
        assert http(a.http + a.run_path(x["id"]), token=TOK_A)[0] == 404
        assert wait_for(lambda: not (a.data_dir / "runs/team-a" / x["id"]).exists(), 10)
        # Team Y's run is untouched.
        assert set(keys_of(moto, "team-b", y["id"])) <= set(moto.keys())
        assert http(a.http + a.run_path(y["id"]) + "/flamegraph", token=TOK_B)[0] == 200
    finally:
        finish(a, b)
