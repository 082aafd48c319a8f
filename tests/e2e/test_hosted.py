"""Hosted mode end to end: tokens, teams, TLS, limits (docs/hosted.md).

Real micrologd processes, real `python -m microlog` clients, certificates
made by the openssl command for each test session.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import SOURCE_DIR, start_collector, run_python, wait_for

pytestmark = pytest.mark.client

TOK_A = "a" * 32  # team-a, write
TOK_A_READ = "r" * 32  # team-a, read
TOK_B = "b" * 32  # team-b, write
TOK_ADMIN = "z" * 32  # ops, admin
TOKENS = f"""# token team user role
{TOK_A} team-a alice write
{TOK_A_READ} team-a carol read
{TOK_B} team-b bob write
{TOK_ADMIN} ops root admin
"""

SCRIPT = """
import sys, time
def work():
    t = time.time()
    while time.time() - t < 0.3:
        pass
print("hello from the profiled program")
work()
sys.exit(3)
"""


def http(url: str, method: str = "GET", token: str | None = None,
         ctx: ssl.SSLContext | None = None, headers: dict[str, str] | None = None,
         data: bytes | None = None) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, method=method, data=data)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ctx) if ctx else urllib.request.HTTPHandler(),
        NoRedirect())
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA, a server certificate for localhost/127.0.0.1, and an
    unrelated CA (the wrong one)."""
    d = tmp_path_factory.mktemp("pki")

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=d, capture_output=True)

    # The extensions a strict verifier requires (Python 3.13+ verifies with
    # VERIFY_X509_STRICT): key usage on the CAs, key identifiers on the leaf.
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"]  # fmt: skip
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=Microlog Test CA", *ca_ext)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out",
         "other.pem", "-days", "2", "-subj", "/CN=Some Other CA", *ca_ext)
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                               "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                               "keyUsage=critical,digitalSignature,keyEncipherment\n"
                               "subjectKeyIdentifier=hash\n"
                               "authorityKeyIdentifier=keyid,issuer\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return {"ca": d / "ca.pem", "other": d / "other.pem", "cert": d / "server.pem",
            "key": d / "server.key"}


def hosted(tmp_path: Path, *extra: str):
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    c = start_collector(tmp_path / "data", "--tokens", str(tokens), *extra)
    c.tokens = tokens  # type: ignore[attr-defined]
    return c


def stop_clean(c) -> None:
    code = c.stop()
    log = c.log_path.read_text(errors="replace")
    assert code == 0, log
    assert "ERROR: AddressSanitizer" not in log and "runtime error:" not in log, log


def profile(c, tmp_path: Path, token: str | None, label: str = "job",
            extra_env: dict[str, str] | None = None, script: str = SCRIPT):
    path = tmp_path / f"{label}.py"
    path.write_text(script)
    env = {"MICROLOG_SERVER": c.http, "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "MICROLOG_SPOOL_DIR": str(tmp_path / f"spool-{label}"), "MICROLOG_TOKEN": token or ""}
    env.update(extra_env or {})
    return run_python(["-m", "microlog", label, str(path)], env=env)


def runs_of(c, token: str, ctx=None) -> list[dict[str, Any]]:
    st, body, _ = http(c.http + "/api/v1/runs", token=token, ctx=ctx)
    assert st == 200, body
    return json.loads(body)


def openapi_routes() -> list[tuple[str, str]]:
    doc = json.loads((SOURCE_DIR / "collector" / "openapi.json").read_text())
    return [(path, method.upper()) for path, ops in doc["paths"].items() for method in ops
            if method in ("get", "post", "put", "delete", "patch")]


def test_every_route_needs_a_valid_token_and_revocation_works(tmp_path: Path) -> None:
    c = hosted(tmp_path)
    try:
        p = profile(c, tmp_path, TOK_A)
        assert p.returncode == 3, p.stderr
        run_id = wait_for(lambda: [r["id"] for r in runs_of(c, TOK_A)], 10)[0]
        routes = openapi_routes()
        assert len(routes) >= 10
        # The UI and its static files are routes too.
        routes += [("/", "GET"), ("/index.html", "GET")]
        checked = 0
        for path, method in routes:
            url = c.http + path.replace("{run}", urllib.parse.quote(run_id, safe=""))
            if path == "/healthz":
                assert http(url, method)[0] == 200
                continue
            for token in (None, "x" * 32, ""):
                st, body, hdrs = http(url, method, token=token)
                assert st == 401, (path, method, token, st, body)
                assert "Bearer" in hdrs.get("WWW-Authenticate", ""), path
            checked += 1
        assert checked == len(routes) - 1
        # A browser without a token gets the sign-in page (still 401).
        st, body, _ = http(c.http + "/", headers={"Accept": "text/html"})
        assert st == 401 and b"Sign in" in body
        # Signing in sets a Secure, HttpOnly cookie that then authenticates.
        st, _, hdrs = http(c.http + "/signin", "POST",
                           data=urllib.parse.urlencode({"token": TOK_A}).encode())
        assert st == 303
        cookie = hdrs["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        st, _, _ = http(c.http + "/api/v1/runs", headers={"Cookie": cookie.split(";")[0]})
        assert st == 200
        st, _, _ = http(c.http + "/signin", "POST", data=b"token=wrongwrongwrongwrong")
        assert st == 401
        # Revoke team-a's writer: gone from the file, SIGHUP, refused everywhere.
        assert http(c.http + "/api/v1/runs", token=TOK_A)[0] == 200
        c.tokens.write_text(TOKENS.replace(f"{TOK_A} team-a alice write\n", ""))
        c.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: http(c.http + "/api/v1/runs", token=TOK_A)[0] == 401, 10)
        for path, method in routes:
            if path == "/healthz":
                continue
            url = c.http + path.replace("{run}", urllib.parse.quote(run_id, safe=""))
            assert http(url, method, token=TOK_A)[0] == 401, path
        assert http(c.http + "/api/v1/runs", token=TOK_B)[0] == 200  # others unaffected
        # A broken tokens file on reload keeps the previous table.
        c.tokens.write_text("this is not a tokens file\n")
        c.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "keeping the previous tokens" in c.log_path.read_text(), 10)
        assert http(c.http + "/api/v1/runs", token=TOK_B)[0] == 200
        # The revoked token cannot send runs either.
        p = profile(c, tmp_path, TOK_A, label="revoked")
        assert p.returncode == 3
        assert "MICROLOG_TOKEN" in p.stderr
    finally:
        stop_clean(c)


def test_teams_are_kept_apart(tmp_path: Path) -> None:
    c = hosted(tmp_path)
    try:
        assert profile(c, tmp_path, TOK_A, label="alpha").returncode == 3
        assert profile(c, tmp_path, TOK_B, label="beta").returncode == 3
        a_runs = wait_for(lambda: [r for r in runs_of(c, TOK_A) if r["status"] == "complete"])
        b_runs = wait_for(lambda: [r for r in runs_of(c, TOK_B) if r["status"] == "complete"])
        assert [r["team"] for r in a_runs] == ["team-a"] and a_runs[0]["label"] == "alpha"
        assert [r["team"] for r in b_runs] == ["team-b"] and b_runs[0]["label"] == "beta"
        # Runs live on disk under their team.
        assert (c.data_dir / "runs" / "team-a" / "alpha").is_dir()
        assert (c.data_dir / "runs" / "team-b" / "beta").is_dir()
        # A team cannot ask for another team's runs by filter either.
        st, body, _ = http(c.http + "/api/v1/runs?team=team-a", token=TOK_B)
        assert st == 200 and json.loads(body) == []
        admin = {r["id"] for r in runs_of(c, TOK_ADMIN)}
        assert admin == {a_runs[0]["id"], b_runs[0]["id"]}
        a_path = c.run_path(a_runs[0]["id"])
        # Cross-team read, queries, export, live stream, diff and delete: 404,
        # exactly as for a run that does not exist.
        for ep in ("", "/flamegraph", "/log", "/timeline", "/export?format=collapsed",
                   "/export?format=pprof", "/live"):
            st, body, _ = http(c.http + a_path + ep, token=TOK_B)
            assert st == 404, (ep, st, body)
            assert http(c.http + a_path + ep, token=TOK_A)[0] == 200, ep
        base = urllib.parse.quote(a_runs[0]["id"], safe="")
        assert http(c.http + c.run_path(b_runs[0]["id"]) + "/diff?base=" + base,
                    token=TOK_B)[0] == 404
        assert http(c.http + a_path, "DELETE", token=TOK_B)[0] == 404
        # A read-only token of the same team may look but not delete.
        assert http(c.http + a_path, token=TOK_A_READ)[0] == 200
        assert http(c.http + a_path, "DELETE", token=TOK_A_READ)[0] == 403
        assert http(c.http + a_path, token=TOK_A)[0] == 200  # still there
        assert http(c.http + a_path, "DELETE", token=TOK_A)[0] == 204
        assert http(c.http + a_path, token=TOK_ADMIN)[0] == 404
        # The admin may delete any team's run.
        assert http(c.http + c.run_path(b_runs[0]["id"]), "DELETE", token=TOK_ADMIN)[0] == 204
        assert runs_of(c, TOK_B) == []
    finally:
        stop_clean(c)


def test_client_without_valid_token_is_refused_and_program_unharmed(tmp_path: Path) -> None:
    c = hosted(tmp_path)
    try:
        for token, why in ((None, "MICROLOG_TOKEN"), ("w" * 32, "MICROLOG_TOKEN"),
                           (TOK_A_READ, "read-only")):
            p = profile(c, tmp_path, token, label="refused")
            assert p.returncode == 3, p.stderr
            assert "hello from the profiled program" in p.stdout
            lines = [l for l in p.stderr.splitlines() if why in l]
            assert len(lines) == 1, p.stderr  # one clear line, printed once
            assert "refused" in lines[0]
        assert runs_of(c, TOK_ADMIN) == []
    finally:
        stop_clean(c)


def test_standalone_refuses_remote_without_tokens(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="allow-remote"):
        start_collector(tmp_path / "d1", "--http", "0.0.0.0:0")
    # With tokens, a non-loopback address is allowed.
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    c = start_collector(tmp_path / "d2", "--tokens", str(tokens), "--http", "0.0.0.0:0")
    try:
        port = c.http.rsplit(":", 1)[1]
        assert http(f"http://127.0.0.1:{port}/api/v1/runs")[0] == 401
    finally:
        stop_clean(c)
    # A bad tokens file is refused at start with the line that is wrong.
    tokens.write_text(f"{TOK_A} team-a alice superuser\n")
    with pytest.raises(RuntimeError, match="line 1: bad role"):
        start_collector(tmp_path / "d3", "--tokens", str(tokens))
    tokens.write_text(f"{TOK_A} ../etc alice write\n")
    with pytest.raises(RuntimeError, match="bad team"):
        start_collector(tmp_path / "d4", "--tokens", str(tokens))


def test_tls_http_and_ingest_with_a_test_ca(tmp_path: Path, pki: dict[str, Path]) -> None:
    c = hosted(tmp_path, "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]),
               "--ingest", "tls+tcp://localhost:0")
    try:
        assert c.http.startswith("https://") and c.ingest.startswith("tls+tcp://")
        ctx = ssl.create_default_context(cafile=str(pki["ca"]))
        assert http(c.http + "/api/v1/runs", token=TOK_A, ctx=ctx)[0] == 200
        # The answer to discovery is the TLS ingest address.
        st, body, _ = http(c.http + "/api/v1/ingest", token=TOK_A, ctx=ctx)
        assert json.loads(body)["ingest"].startswith("tls+tcp://")
        # The wrong CA: the HTTPS handshake fails.
        with pytest.raises(urllib.error.URLError):
            http(c.http + "/healthz", ctx=ssl.create_default_context(cafile=str(pki["other"])))
        # A client trusting the test CA sends its run over tls+tcp.
        p = profile(c, tmp_path, TOK_A, label="secure",
                    extra_env={"MICROLOG_CA_FILE": str(pki["ca"])})
        assert p.returncode == 3 and "hello from the profiled program" in p.stdout, p.stderr
        runs = wait_for(lambda: [r for r in runs_of(c, TOK_A, ctx) if r["status"] == "complete"])
        assert runs and runs[0]["label"] == "secure" and runs[0]["samples"] > 0
        # A client with the wrong CA: one clear line, the program unharmed.
        p = profile(c, tmp_path, TOK_A, label="wrongca",
                    extra_env={"MICROLOG_CA_FILE": str(pki["other"])})
        assert p.returncode == 3 and "hello from the profiled program" in p.stdout
        lines = [l for l in p.stderr.splitlines() if "certificate" in l]
        assert len(lines) == 1, p.stderr
        # Ingest over TLS with a wrong CA directly (no discovery): refused too.
        p = profile(c, tmp_path, TOK_A, label="wrongca2",
                    extra_env={"MICROLOG_CA_FILE": str(pki["other"]), "MICROLOG_INGEST": c.ingest})
        assert p.returncode == 3
        assert [r["label"] for r in runs_of(c, TOK_A, ctx)] == ["secure"]
    finally:
        stop_clean(c)


NOISY = """
import sys, time
payload = "x" * 2000
t = time.time()
while time.time() - t < 2.0:
    print(payload)
sys.exit(5)
"""

QUIET = """
import time
def work():
    t = time.time()
    while time.time() - t < 0.5:
        pass
work()
print("quiet done")
"""


def test_rate_limited_team_does_not_slow_another(tmp_path: Path) -> None:
    # Under the thread sanitizer the noisy program prints a fraction as
    # much: a lower limit keeps it over the rate.
    rate = "16K" if os.environ.get("ML_SANITIZE") == "thread" else "64K"
    c = hosted(tmp_path, "--max-ingest-rate", rate, "--max-message-size", "8M")
    try:
        # Alone, how long the quiet program takes (the bound below is loose).
        solo = profile(c, tmp_path, TOK_B, label="solo", script=QUIET)
        assert solo.returncode == 0
        noisy_path = tmp_path / "noisy.py"
        noisy_path.write_text(NOISY)
        env = dict(os.environ, MICROLOG_SERVER=c.http, MICROLOG_TOKEN=TOK_A,
                   MICROLOG_SPOOL_DIR=str(tmp_path / "spool-noisy"))
        noisy = subprocess.Popen([os.environ.get("PYTHON", sys.executable), "-m", "microlog", "noisy",
                                  str(noisy_path)], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        try:
            # Wait until team-a is over its rate, then run team-b's program.
            if not wait_for(lambda: "rate limit" in c.log_path.read_text(), 30):
                noisy.kill()
                pytest.fail(f"team-a never hit the rate limit: {noisy.communicate()[1][-2000:]}"
                            f"\n{c.log_path.read_text()[-2000:]}")
            quiet = profile(c, tmp_path, TOK_B, label="quiet", script=QUIET)
        finally:
            _, noisy_err = noisy.communicate(timeout=120)
        assert noisy.returncode == 5
        # team-a's client reported the limit, once.
        assert len([l for l in noisy_err.splitlines() if "rate limit" in l]) == 1, noisy_err
        assert quiet.returncode == 0 and "quiet done" in quiet.stdout, quiet.stderr
        assert "rate limit" not in quiet.stderr and "Microlog:" not in quiet.stderr.replace(
            "┃ Microlog:", "")
        # Fully acked, within a generous bound of its solo time.
        assert quiet.elapsed < solo.elapsed + 5, (quiet.elapsed, solo.elapsed)
        done = {r["label"]: r for r in runs_of(c, TOK_B)}
        assert done["quiet"]["status"] == "complete"
    finally:
        stop_clean(c)


def test_limits_refuse_oversized_runs_with_a_clear_message(tmp_path: Path) -> None:
    c = hosted(tmp_path, "--max-run-size", "200K")
    try:
        p = profile(c, tmp_path, TOK_A, label="big", script=NOISY.replace("2.0", "0.5"))
        assert p.returncode == 5
        lines = [l for l in p.stderr.splitlines() if "maximum run size" in l]
        assert len(lines) == 1, p.stderr
        # A permanent refusal: the client stopped sending that run at once
        # (one refused batch, no retries), spooled nothing to retry later,
        # and closed it; the collector keeps the start, marked incomplete
        # with the client's count of what it dropped.
        log = c.log_path.read_text()
        assert log.count("maximum run size") == 1, log[-3000:]
        assert not list((tmp_path / "spool-big").glob("*.mlspool"))
        big = wait_for(lambda: [r for r in runs_of(c, TOK_A) if r["label"] == "big"
                                and r["status"] != "live"], 10)
        assert big and big[0]["status"] == "incomplete", big
        st, body, _ = http(c.http + c.run_path(big[0]["id"]), token=TOK_A)
        meta = json.loads(body)
        assert st == 200 and meta["dropped_logs"] > 0, meta
        # Another team is not affected.
        assert profile(c, tmp_path, TOK_B, label="small", script=QUIET).returncode == 0
        assert wait_for(lambda: [r for r in runs_of(c, TOK_B) if r["status"] == "complete"])
    finally:
        stop_clean(c)


def test_spooled_run_keeps_the_token_it_was_recorded_with(tmp_path: Path) -> None:
    """A run spooled under team-a's token and delivered later by a team-b
    client (the next run for the same server) is stored for team-a: each
    spooled request carries the token it was recorded with. A spooled run
    whose token is no longer valid is refused, left on disk, and never
    stored under the delivering client's team."""
    from test_delivery import Drive  # the C client driver (tests/bench/ml_drive.c)
    c = hosted(tmp_path)
    try:
        spool = tmp_path / "spool"
        first = Drive(tmp_path, c.http, 200, 2000, "--spool-only", "--label", "from-a",
                      spool=spool, env={"MICROLOG_TOKEN": TOK_A})
        first.finish()
        stale = Drive(tmp_path, c.http, 100, 2000, "--spool-only", "--label", "from-revoked",
                      spool=spool, env={"MICROLOG_TOKEN": "q" * 32})
        stale.finish()
        files = list(spool.glob("*.mlspool"))
        assert len(files) == 2
        assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
        time.sleep(1.1)
        second = Drive(tmp_path, c.http, 2000, 500, "--label", "from-b", spool=spool,
                       env={"MICROLOG_TOKEN": TOK_B})
        counts = second.finish()
        assert counts["delivered"] and counts["leftover_files"] == 1, counts
        a_runs = wait_for(lambda: [r for r in runs_of(c, TOK_A) if r["status"] == "complete"], 10)
        assert [(r["label"], r["team"]) for r in a_runs] == [("from-a", "team-a")]
        b_runs = wait_for(lambda: [r for r in runs_of(c, TOK_B) if r["status"] == "complete"], 10)
        assert [(r["label"], r["team"]) for r in b_runs] == [("from-b", "team-b")]
        assert "from-revoked" not in {r["label"] for r in runs_of(c, TOK_ADMIN)}
        # the refused file stays for its owner (a valid token, an import)
        left = list(spool.glob("*.mlspool"))
        assert len(left) == 1 and left[0] in files
        assert "invalid or revoked token" in c.log_path.read_text()
    finally:
        stop_clean(c)


def test_over_max_connections_the_client_is_told_why(tmp_path: Path) -> None:
    """A connection over --max-connections has its first request answered
    RESOURCE_EXHAUSTED "too many connections" before it is closed: the
    client prints that reason once (not a bare connect failure), keeps
    its run (spooled), and the client already connected is not disturbed."""
    from test_delivery import Drive
    c = hosted(tmp_path, "--max-connections", "1")
    try:
        holder = Drive(tmp_path, c.http, 2500, 500, "--label", "holder",
                       env={"MICROLOG_TOKEN": TOK_A})  # 5 s on one connection
        assert wait_for(lambda: "run holder/" in c.log_path.read_text(), 10)
        late = Drive(tmp_path, c.http, 100, 1000, "--label", "late", "--close-timeout", "1500",
                     spool=tmp_path / "spool-late", env={"MICROLOG_TOKEN": TOK_B})
        late_counts = late.finish()
        assert late_counts["spooled"] and not late_counts["delivered"], late_counts
        lines = [l for l in late.stderr.splitlines() if "too many connections" in l]
        assert len(lines) == 1 and "at most 1" in lines[0], late.stderr
        held = holder.finish()
        assert held["delivered"], (held, holder.stderr)
        st, body, _ = http(c.http + "/metrics", token=TOK_ADMIN)
        assert st == 200
        values = {l.split(" ")[0]: float(l.split(" ")[1]) for l in body.decode().splitlines()
                  if l and not l.startswith("#")}
        assert values["microlog_ingest_refused_connections_total"] >= 1
        assert "too many connections" not in holder.stderr
    finally:
        stop_clean(c)
