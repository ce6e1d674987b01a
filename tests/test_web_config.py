"""--web.config.file: the exporter-toolkit format read and checked, then a real daemon behind TLS (a CA and
certificates made in the test by trustme), client certificates and basic auth on every path."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
import trustme
import yaml

from exporter.config import ConfigError, load_settings
from exporter.daemon import Daemon
from exporter.sinks.webconfig import AUTH_CACHE_SIZE, Guard, load_web_config

from .alerting import free_port, process, query, wait_for
from .conftest import require_binary
from .test_poller import FakeSource

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # cost 4: fast tests, same format
# Every path the daemon serves, the status page at / included.
PATHS = ["/metrics", "/healthz", "/readyz", "/api/v1/endpoints", "/", "/-/reload", "/no-such-page"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A server certificate for 127.0.0.1 and two client certificates, from a CA made here; plus a client
    certificate from another CA, which the server must not trust."""
    out = tmp_path_factory.mktemp("pki")
    ca, other_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(out / "server.crt"))
    server.private_key_pem.write_to_path(str(out / "server.key"))
    ca.cert_pem.write_to_path(str(out / "ca.crt"))
    for name, issuer, san in (("scraper", ca, "scraper.example"), ("intruder", ca, "intruder.example"),
                              ("stranger", other_ca, "scraper.example"), ("v6-scraper", ca, "2001:db8::1")):
        cert = issuer.issue_cert(san)
        cert.private_key_pem.write_to_path(str(out / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(str(out / f"{name}.crt"))
    return {p.name: p for p in out.iterdir()}


def write(tmp_path: Path, text: str, name: str = "web.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def block(path: Path) -> str:
    """A PEM file as a YAML block scalar's lines (inline `cert`, `key`, `client_ca`)."""
    return "|\n" + "\n".join("    " + line for line in path.read_text().splitlines()) + "\n"


def problems(path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    return str(err.value)


# -- reading the file -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("tls_server_config:\n  cert_file: server.crt\n", "missing one of key or key_file"),
    ("tls_server_config:\n  key_file: server.key\n", "missing one of cert or cert_file"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n",
     "client CAs are configured without a client_auth_type"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n",
     "RequireAnyClientCert is not supported"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Sometimes\n",
     "invalid client auth type 'Sometimes'"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS14\n",
     "tls_server_config.min_version: unknown TLS version 'TLS14'"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n  max_version: TLS12\n",
     "min_version TLS13 is above max_version TLS12"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
     "unknown cipher 'TLS_RSA_WITH_RC4_128_SHA'"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [X25519, CurveP256]\n",
     "at most one curve is supported"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: VerifyClientCertIfGiven\n"
     "  client_ca_file: ca.crt\n  client_allowed_sans: [a]\n", "client_allowed_sans requires client_auth_type"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n", "cert_file"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: ca.crt\n", "cannot load the certificate and key"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert_fle: x\n", "cert_fle: unknown key"),
    ("http_server_config:\n  headers:\n    Server: nginx\n", "HTTP header 'Server' can not be configured"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "expected one of deny, sameorigin"),
    ("rate_limit:\n  interval: 1 second\n  burst: 10\n", "rate_limit.interval: not a duration: '1 second'"),
    ("basic_auth_users:\n  alice: hunter2\n", "user 'alice': the password must be a bcrypt hash"),
    ("- a list\n", "the top level must be a mapping"),
    ("tls_server_config: [\n", "not valid YAML"),
    ("tls_server_config:\n  key: 'hunter2\n  cert: x\n", "not valid YAML"),  # never the line's text
])
def test_bad_files_are_refused_with_the_reason(pki, tmp_path, text, expected):
    for name in ("server.crt", "server.key", "ca.crt"):
        (tmp_path / name).write_bytes(pki[name].read_bytes())
    message = problems(write(tmp_path, text))
    assert expected in message
    assert "hunter2" not in message  # a misplaced password is never echoed


def test_a_missing_file_is_refused(tmp_path):
    assert "cannot read" in problems(tmp_path / "absent.yml")


def test_paths_are_relative_to_the_file_and_an_empty_tls_section_is_plain_http(pki, tmp_path):
    """As the toolkit: cert_file next to the web config file is found whatever the working directory."""
    text = (f"tls_server_config:\n  cert_file: {pki['server.crt'].name}\n  key_file: {pki['server.key'].name}\n"
            "  min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"
            "  curve_preferences: [X25519]\n")
    config = load_web_config(write(pki["server.crt"].parent, text, "relative.yml"))
    assert config.context is not None and config.context.minimum_version == ssl.TLSVersion.TLSv1_3
    plain = load_web_config(write(tmp_path, "tls_server_config: {}\nhttp_server_config:\n  http2: true\n"))
    assert plain.context is None and plain.users == {}


def test_inline_certificate_and_key_are_accepted(pki, tmp_path):
    text = f"tls_server_config:\n  cert: {block(pki['server.crt'])}  key: {block(pki['server.key'])}"
    assert load_web_config(write(tmp_path, text)).context is not None


def test_the_cli_refuses_a_bad_web_config_before_starting(tmp_path):
    bad = write(tmp_path, "basic_auth_users:\n  alice: plain-text-password\n")
    result = subprocess.run([sys.executable, "-m", "exporter", "run", "--listen", "127.0.0.1:0",
                             "--web.config.file", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "the password must be a bcrypt hash" in result.stderr and "plain-text-password" not in result.stderr
    checked = subprocess.run([sys.executable, "-m", "exporter", "check-config", "--web.config.file", str(bad)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 2 and "bcrypt" in checked.stderr


# -- basic auth, in front of any WSGI app -----------------------------------------------------------


def call(app, authorization: str | None = None, path: str = "/metrics") -> tuple[str, dict[str, str], bytes]:
    seen: dict = {}
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization

    def start_response(status, headers, exc_info=None):
        seen.update(status=status, headers=dict(headers))

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_wrong_credentials_get_the_same_401_whichever_part_is_wrong(tmp_path):
    config = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: '{HASH}'\n"
                                             "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"))
    guard = Guard(lambda environ, start: (start("200 OK", [("Content-Type", "text/plain")]), [b"metrics"])[1],
                  lambda: config)
    answers = [call(guard, header) for header in (None, basic("alice", "wrong"), basic("mallory", PASSWORD),
                                                   basic("mallory", "wrong"), "Bearer " + PASSWORD, "Basic !!!",
                                                   "Basic " + base64.b64encode(b"no-colon").decode(),
                                                   basic("alice", "x" * 100))]
    for status, headers, body in answers:
        assert status == "401 Unauthorized"
        assert headers["WWW-Authenticate"].startswith("Basic")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body == b"Unauthorized\n"
    status, headers, body = call(guard, basic("alice", PASSWORD))
    assert (status, body, headers["X-Content-Type-Options"]) == ("200 OK", b"metrics", "nosniff")


def test_verified_credentials_are_cached_so_bcrypt_runs_once_per_credential(tmp_path):
    config = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: '{HASH}'\n"))
    checks: list[bytes] = []

    def counting(password: bytes, hashed: bytes) -> bool:
        checks.append(password)
        return bcrypt.checkpw(password, hashed)

    guard = Guard(lambda environ, start: (start("200 OK", []), [b"ok"])[1], lambda: config, checkpw=counting)
    for _ in range(5):
        assert call(guard, basic("alice", PASSWORD))[0] == "200 OK"
        assert call(guard, basic("alice", "wrong"))[0] == "401 Unauthorized"
    assert len(checks) == 2
    for i in range(AUTH_CACHE_SIZE + 1):  # a flood of distinct guesses cannot grow the cache without bound
        call(guard, basic("alice", f"guess-{i}"))
    assert len(guard._cache) == AUTH_CACHE_SIZE


def test_rate_limit_answers_429_before_checking_credentials(tmp_path):
    """The toolkit's token bucket: `burst` requests at once, then one per `interval`, for all clients."""
    config = load_web_config(write(tmp_path, f"rate_limit:\n  interval: 1h\n  burst: 2\nbasic_auth_users:\n  alice: '{HASH}'\n"
                                             "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"))
    checks: list[bytes] = []
    guard = Guard(lambda environ, start: (start("200 OK", []), [b"ok"])[1], lambda: config,
                  checkpw=lambda password, hashed: checks.append(password) or bcrypt.checkpw(password, hashed))
    assert call(guard, basic("alice", PASSWORD))[0] == "200 OK"
    assert call(guard, basic("alice", "wrong"))[0] == "401 Unauthorized"
    status, headers, body = call(guard, basic("alice", "another guess"))
    assert (status, body, headers["X-Frame-Options"]) == ("429 Too Many Requests", b"Too Many Requests\n", "deny")
    assert len(checks) == 2  # the refused request cost no bcrypt


# -- a real daemon behind TLS -----------------------------------------------------------------------


@pytest.fixture
def serve(tmp_path) -> Iterator:
    daemons: list[Daemon] = []

    def start(web_text: str, lifecycle: bool = False) -> Daemon:
        web = load_web_config(write(tmp_path, web_text))
        settings = load_settings(overrides={"listen": "127.0.0.1:0", "poll_interval_seconds": 1})
        daemon = Daemon(settings, FakeSource(), web=web, lifecycle=lifecycle).start()
        daemons.append(daemon)
        assert daemon.wait_ready(15)
        return daemon

    yield start
    for daemon in daemons:
        daemon.stop()


def tls_config(pki: dict[str, Path], extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {pki['server.crt']}\n  key_file: {pki['server.key']}\n{extra}"


def test_tls_and_basic_auth_guard_every_path(pki, serve):
    daemon = serve(tls_config(pki) + f"basic_auth_users:\n  alice: '{HASH}'\n"
                   "http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n")
    assert daemon.url.startswith("https://127.0.0.1:")
    ca = str(pki["ca.crt"])
    for path in PATHS:
        refused = requests.get(daemon.url + path, verify=ca, timeout=10)
        assert refused.status_code == 401, path
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
        assert refused.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert requests.get(daemon.url + path, verify=ca, auth=("alice", "wrong"), timeout=10).status_code == 401
    for path in ("/metrics", "/healthz", "/readyz", "/api/v1/endpoints", "/"):
        answer = requests.get(daemon.url + path, verify=ca, auth=("alice", PASSWORD), timeout=10)
        assert answer.status_code == 200, path
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "model_serving_exporter_up" in requests.get(daemon.url + "/metrics", verify=ca, auth=("alice", PASSWORD),
                                                       timeout=10).text
    with pytest.raises(requests.exceptions.SSLError):  # a client that does not trust the CA
        requests.get(daemon.url + "/healthz", timeout=10)
    with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP on the TLS port gets no answer
        requests.get(daemon.url.replace("https://", "http://") + "/healthz", timeout=10)
    # After failed handshakes the server still answers.
    assert requests.get(daemon.url + "/healthz", verify=ca, auth=("alice", PASSWORD), timeout=10).status_code == 200


def test_client_certificates_from_the_client_ca_only_and_with_an_allowed_san(pki, serve):
    daemon = serve(tls_config(pki, f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki['ca.crt']}\n"
                                   "  client_allowed_sans: [scraper.example, '2001:db8::1']\n"))
    ca = str(pki["ca.crt"])
    scraper = (str(pki["scraper.crt"]), str(pki["scraper.key"]))
    assert requests.get(daemon.url + "/metrics", verify=ca, cert=scraper, timeout=10).status_code == 200
    v6 = (str(pki["v6-scraper.crt"]), str(pki["v6-scraper.key"]))  # an IP SAN, written as Go writes it
    assert requests.get(daemon.url + "/metrics", verify=ca, cert=v6, timeout=10).status_code == 200
    for client in (None, (str(pki["stranger.crt"]), str(pki["stranger.key"])),  # no certificate; another CA's
                   (str(pki["intruder.crt"]), str(pki["intruder.key"]))):  # the right CA, a SAN not allowed
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(daemon.url + "/metrics", verify=ca, cert=client, timeout=10)
    assert requests.get(daemon.url + "/readyz", verify=ca, cert=scraper, timeout=10).status_code == 200


def test_min_version_is_enforced(pki, serve):
    daemon = serve(tls_config(pki, "  min_version: TLS13\n"))
    client = ssl.create_default_context(cafile=str(pki["ca.crt"]))
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", daemon.http.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            client.wrap_socket(raw, server_hostname="127.0.0.1")
    client.maximum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection(("127.0.0.1", daemon.http.port), timeout=10) as raw:
        with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.3"


def test_a_renewed_certificate_and_edited_users_apply_without_a_restart_and_a_bad_edit_is_refused(pki, serve, tmp_path,
                                                                                                   caplog):
    """As the toolkit, which reads the file on every request: cert-manager renewing the Secret is enough."""
    for name in ("server.crt", "server.key"):
        (tmp_path / name).write_bytes(pki[name].read_bytes())
    daemon = serve(f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  alice: '{HASH}'\n")
    old_ca = str(pki["ca.crt"])
    assert requests.get(daemon.url + "/healthz", verify=old_ca, auth=("alice", PASSWORD), timeout=10).status_code == 200

    renewed, new_ca = trustme.CA(), tmp_path / "new-ca.crt"
    renewed.cert_pem.write_to_path(str(new_ca))
    cert = renewed.issue_cert("127.0.0.1")
    for blob, name in ((cert.cert_chain_pems[0], "server.crt"), (cert.private_key_pem, "server.key")):
        blob.write_to_path(str(tmp_path / f"{name}.new"))
        os.replace(tmp_path / f"{name}.new", tmp_path / name)  # as a Secret volume swaps its files at once
    new_password = "renewed " + PASSWORD
    hashed = bcrypt.hashpw(new_password.encode(), bcrypt.gensalt(4)).decode()
    (tmp_path / "web.yml").write_text(f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                                      f"basic_auth_users:\n  alice: '{hashed}'\n")

    def answers(ca: Path | str, password: str) -> int | None:
        try:
            return requests.get(daemon.url + "/healthz", verify=str(ca), auth=("alice", password), timeout=10).status_code
        except requests.exceptions.SSLError:
            return None

    deadline = time.monotonic() + 15
    while answers(new_ca, new_password) != 200:
        assert time.monotonic() < deadline, "the renewed certificate and users were not picked up"
        time.sleep(0.2)
    assert answers(old_ca, new_password) is None  # the old certificate is gone
    assert answers(new_ca, PASSWORD) == 401  # and so is the old password

    (tmp_path / "web.yml").write_text("basic_auth_users:\n  alice: plain-text\n")  # a bad edit: refused, logged
    deadline = time.monotonic() + 15
    while "changed but is invalid" not in caplog.text:
        assert time.monotonic() < deadline, "the invalid edit was not noticed"
        answers(new_ca, new_password)
        time.sleep(0.2)
    assert answers(new_ca, new_password) == 200
    assert "plain-text" not in caplog.text


def test_verify_client_cert_if_given_admits_no_certificate_but_not_an_untrusted_one(pki, serve):
    daemon = serve(tls_config(pki, f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca: {block(pki['ca.crt'])}"))
    ca = str(pki["ca.crt"])
    assert requests.get(daemon.url + "/healthz", verify=ca, timeout=10).status_code == 200
    assert requests.get(daemon.url + "/healthz", verify=ca, cert=(str(pki["scraper.crt"]), str(pki["scraper.key"])),
                        timeout=10).status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(daemon.url + "/healthz", verify=ca, cert=(str(pki["stranger.crt"]), str(pki["stranger.key"])),
                     timeout=10)


# -- the real consumers: Prometheus's own toolkit reads the same files, Prometheus scrapes through them -------


def full_config(pki: dict[str, Path]) -> str:
    return tls_config(pki, f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki['ca.crt']}\n"
                           "  min_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n") + (
        f"basic_auth_users:\n  alice: '{HASH}'\n"
        "http_server_config:\n  http2: true\n  headers:\n    X-Content-Type-Options: nosniff\n")


@pytest.mark.integration
def test_the_toolkit_itself_accepts_and_refuses_the_same_files(pki, tmp_path):
    """`promtool check web-config` is exporter-toolkit's own validation (Go): a file is good for both or for
    neither."""
    promtool = require_binary("promtool")
    cases = {"good.yml": (full_config(pki), True),
             "plain-password.yml": ("basic_auth_users:\n  alice: hunter2\n", False),
             "ca-without-auth-type.yml": (tls_config(pki, f"  client_ca_file: {pki['ca.crt']}\n"), False),
             "unknown-key.yml": (tls_config(pki, "  cert_fle: x\n"), False),
             "no-key.yml": (f"tls_server_config:\n  cert_file: {pki['server.crt']}\n", False)}
    for name, (text, good) in cases.items():
        path = write(tmp_path, text, name)
        toolkit = subprocess.run([promtool, "check", "web-config", str(path)], capture_output=True, text=True, timeout=60)
        assert (toolkit.returncode == 0) == good, (name, toolkit.stdout + toolkit.stderr)
        if good:
            load_web_config(path)
        else:
            problems(path)


@pytest.mark.integration
def test_prometheus_scrapes_through_client_certificates_and_basic_auth(pki, serve, tmp_path):
    daemon = serve(full_config(pki))
    prometheus_bin = require_binary("prometheus")
    target = {"targets": [f"127.0.0.1:{daemon.http.port}"]}
    tls = {"ca_file": str(pki["ca.crt"]), "cert_file": str(pki["scraper.crt"]), "key_file": str(pki["scraper.key"])}
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": [
        {"job_name": "authorized", "scheme": "https", "tls_config": tls,
         "basic_auth": {"username": "alice", "password": PASSWORD}, "static_configs": [target]},
        {"job_name": "wrong-password", "scheme": "https", "tls_config": tls,
         "basic_auth": {"username": "alice", "password": "wrong"}, "static_configs": [target]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [prometheus_bin, f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}", f"--web.listen-address=127.0.0.1:{port}"]
    with process(args, tmp_path / "prometheus.log", f"{url}/-/ready"):
        wait_for(lambda: query(url, 'up{job="authorized"} == 1') and query(url, 'up{job="wrong-password"} == 0'),
                 60, "one scrape through TLS and basic auth, one refused")
        assert query(url, 'model_serving_exporter_endpoints{job="authorized", state="selected"} == 3')
        assert not query(url, '{job="wrong-password", __name__=~"model_serving_.*"}')
