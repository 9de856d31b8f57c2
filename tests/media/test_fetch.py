"""fetch_url against real HTTP servers on loopback: SSRF refusals, redirects, caps, timeouts."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest

from apipod.errors import MediaError
from apipod.media import fetch
from apipod.media.fetch import check_url, fetch_url, post_url
from apipod.media.urlpolicy import UrlPolicy
from tests.helpers import rebind_dns
from tests.webhook_receiver import receiver

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
LOCAL = UrlPolicy(allowlist=("127.0.0.1/32",), timeout_s=5.0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.requests: list[tuple[str, str | None]] = []
        self.stop = threading.Event()

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hang up on purpose in these tests; no tracebacks."""

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.server_address[0]}:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host")))
        path, _, query = self.path.partition("?")
        route = _ROUTES.get(path, _chain if path.startswith("/chain/") else _missing)
        try:
            route(self, {k: v[0] for k, v in parse_qs(query).items()})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


Route = Callable[[_Handler, dict[str, str]], None]


def _image(h: _Handler, q: dict[str, str]) -> None:
    h.send(200, PNG, {"Content-Type": "Image/PNG; charset=binary"})


def _download(h: _Handler, q: dict[str, str]) -> None:
    headers = {"Content-Type": "application/octet-stream", "Content-Disposition": q["cd"]}
    h.send(200, b"payload", headers)


def _to(h: _Handler, q: dict[str, str]) -> None:
    h.send(302, headers={"Location": q["url"]})


def _chain(h: _Handler, q: dict[str, str]) -> None:
    left = int(h.path.rsplit("/", 1)[-1])
    h.send(302, headers={"Location": f"/chain/{left - 1}" if left > 1 else "/image.png"})


def _big(h: _Handler, q: dict[str, str]) -> None:
    h.send(200, b"x" * int(q["n"]))


def _huge_declared(h: _Handler, q: dict[str, str]) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(10**9))
    h.end_headers()
    h.server.stop.wait(5)


def _chunked(h: _Handler, q: dict[str, str]) -> None:
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    for _ in range(512):  # 32 MB if nobody hangs up
        h.send_chunk(b"y" * 65536)
    h.send_chunk(b"")


def _close_delimited(h: _Handler, q: dict[str, str]) -> None:
    h.send_response(200)
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.write(b"z" * 300_000)
    h.close_connection = True


def _stall_headers(h: _Handler, q: dict[str, str]) -> None:
    h.server.stop.wait(5)


def _stall_body(h: _Handler, q: dict[str, str]) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "1000")
    h.end_headers()
    h.wfile.write(b"0123456789")
    h.server.stop.wait(5)


def _trickle(h: _Handler, q: dict[str, str]) -> None:
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    while not h.server.stop.wait(0.05):
        h.send_chunk(b".")


def _trickle_then_stall(h: _Handler, q: dict[str, str]) -> None:
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    for _ in range(16):
        h.send_chunk(b".")
        time.sleep(0.05)
    h.server.stop.wait(5)


def _missing(h: _Handler, q: dict[str, str]) -> None:
    h.send(404, b"not here", {"Content-Type": "text/plain"})


_ROUTES: dict[str, Route] = {
    "/image.png": _image,
    "/download": _download,
    "/to": _to,
    "/redirect": lambda h, q: h.send(302, headers={"Location": "/image.png"}),
    "/loop": lambda h, q: h.send(302, headers={"Location": "/loop"}),
    "/big": _big,
    "/huge-declared": _huge_declared,
    "/chunked": _chunked,
    "/close-delimited": _close_delimited,
    "/stall-headers": _stall_headers,
    "/stall-body": _stall_body,
    "/trickle": _trickle,
    "/trickle-then-stall": _trickle_then_stall,
}


def _serve(host: str, port: int = 0) -> Iterator[_Server]:
    try:
        server = _Server(host, port)
    except OSError as exc:  # only Linux routes all of 127/8 to lo
        pytest.skip(f"cannot listen on {host}: {exc}")
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from _serve("127.0.0.1")


@pytest.fixture
def other_server() -> Iterator[_Server]:
    """A second server, on 127.0.0.2."""
    yield from _serve("127.0.0.2")


def _refused(url: str, policy: UrlPolicy, field: str = "image") -> MediaError:
    with pytest.raises(MediaError) as caught:
        fetch_url(url, policy, field=field)
    assert caught.value.field == field
    assert f"'{field}'" in str(caught.value)
    return caught.value


# --- refusals before any connection --------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/image.png",
        "http://localhost:{port}/image.png",
        "http://127.1:{port}/image.png",
        "http://2130706433:{port}/image.png",
        "http://0x7f000001:{port}/image.png",
        "http://0x7f.1:{port}/image.png",
        "http://017700000001:{port}/image.png",
        "http://0.0.0.0:{port}/image.png",
        "http://[::ffff:127.0.0.1]:{port}/image.png",
        "http://[::1]:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
    ],
)
def test_default_policy_refuses_non_public_addresses(server: _Server, url: str) -> None:
    started = time.monotonic()
    error = _refused(url.format(port=server.server_address[1]), UrlPolicy(timeout_s=5))
    assert "non-public address" in str(error)
    assert time.monotonic() - started < 2.5  # refused before any connect: not the 5 s timeout
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://x/", "gopher://127.0.0.1:70/_", "example.com/a.png", "data:,x"],
)
def test_only_http_and_https_schemes(url: str) -> None:
    error = _refused(url, LOCAL)
    assert "only http and https" in str(error)


def test_credentials_refused_before_connecting(server: _Server) -> None:
    url = server.url("/image.png").replace("http://", "http://user:secret@")
    error = _refused(url, LOCAL)
    assert "credentials" in str(error)
    assert "secret" not in str(error)
    assert server.requests == []


def test_unresolvable_host() -> None:
    error = _refused("http://no-such-host.invalid/a.png", UrlPolicy(timeout_s=5))
    assert "could not resolve host 'no-such-host.invalid'" in str(error)


# --- allowed downloads -----------------------------------------------------------------


def test_network_allowlist_fetches_bytes_type_and_name(server: _Server) -> None:
    media = fetch_url(server.url("/image.png"), LOCAL, field="image")
    assert (media.data, media.size) == (PNG, len(PNG))
    assert (media.content_type, media.file_name) == ("image/png", "image.png")
    assert server.requests == [("/image.png", f"127.0.0.1:{server.server_address[1]}")]


def test_host_name_allowlist_sends_original_host_header(server: _Server) -> None:
    policy = UrlPolicy(allowlist=("localhost",), timeout_s=5)
    media = fetch_url(server.url("/image.png", host="localhost"), policy)
    assert media.data == PNG
    assert server.requests == [("/image.png", f"localhost:{server.server_address[1]}")]


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ('attachment; filename="cat photo.png"', "cat photo.png"),
        ("attachment; filename*=UTF-8''caf%C3%A9.png", "café.png"),
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ("inline", "download"),
    ],
)
def test_file_name_from_content_disposition(
    server: _Server, disposition: str, expected: str
) -> None:
    media = fetch_url(server.url(f"/download?cd={quote(disposition)}"), LOCAL)
    assert (media.data, media.content_type, media.file_name) == (
        b"payload",
        "application/octet-stream",
        expected,
    )


def test_relative_redirect_is_followed(server: _Server) -> None:
    media = fetch_url(server.url("/redirect"), LOCAL)
    assert (media.data, media.file_name) == (PNG, "image.png")
    assert [path for path, _ in server.requests] == ["/redirect", "/image.png"]


def test_redirect_to_address_outside_allowlist_refused(
    server: _Server, other_server: _Server
) -> None:
    target = other_server.url("/image.png")
    error = _refused(server.url(f"/to?url={quote(target)}"), LOCAL)
    assert "non-public address" in str(error)
    assert other_server.requests == []
    both = UrlPolicy(allowlist=("127.0.0.1/32", "127.0.0.2"), timeout_s=5)
    assert fetch_url(server.url(f"/to?url={quote(target)}"), both).data == PNG
    assert [path for path, _ in other_server.requests] == ["/image.png"]


def test_checked_address_is_dialled_not_a_second_lookup(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that answers 127.0.0.1 to the check and 127.0.0.2 later."""
    rebind_dns(monkeypatch, "rebind.test", "127.0.0.1", "127.0.0.2")
    for rebound in _serve("127.0.0.2", server.server_address[1]):
        assert fetch_url(server.url("/image.png", host="rebind.test"), LOCAL).data == PNG
        assert rebound.requests == []
    assert server.requests == [("/image.png", f"rebind.test:{server.server_address[1]}")]


def test_redirect_to_file_scheme_refused(server: _Server) -> None:
    error = _refused(server.url(f"/to?url={quote('file:///etc/passwd')}"), LOCAL)
    assert "scheme 'file' is not allowed" in str(error)


def test_redirect_loop_refused(server: _Server) -> None:
    error = _refused(server.url("/loop"), LOCAL)
    assert "redirect loop" in str(error)
    assert len(server.requests) == 1


def test_redirect_limit(server: _Server) -> None:
    strict = UrlPolicy(allowlist=("127.0.0.1/32",), timeout_s=5, max_redirects=2)
    error = _refused(server.url("/chain/3"), strict)
    assert "too many redirects (more than 2)" in str(error)
    assert len(server.requests) == 3
    enough = UrlPolicy(allowlist=("127.0.0.1/32",), timeout_s=5, max_redirects=3)
    assert fetch_url(server.url("/chain/3"), enough).data == PNG


def test_refusals_logged_at_info_fetches_at_debug(
    server: _Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="apipod.media.fetch")
    _refused(server.url("/image.png"), UrlPolicy(timeout_s=5))
    fetch_url(server.url("/image.png"), LOCAL)
    levels = {(r.levelno, r.getMessage().split(" ")[0]) for r in caplog.records}
    assert (logging.INFO, "refused") in levels
    assert (logging.DEBUG, "fetched") in levels
    assert all(r.levelno <= logging.INFO for r in caplog.records)


# --- failures --------------------------------------------------------------------------


def test_not_found_names_status(server: _Server) -> None:
    error = _refused(server.url("/missing"), LOCAL)
    assert "HTTP status 404" in str(error)


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = _refused(f"http://127.0.0.1:{port}/a.png", LOCAL)
    assert "could not connect to host '127.0.0.1'" in str(error)


SMALL = UrlPolicy(allowlist=("127.0.0.1/32",), timeout_s=5, max_bytes=100_000)


def test_body_of_exactly_max_bytes_is_accepted(server: _Server) -> None:
    assert len(fetch_url(server.url("/big?n=100000"), SMALL).data) == 100_000


@pytest.mark.parametrize(
    "path", ["/big?n=100001", "/huge-declared", "/chunked", "/close-delimited"]
)
def test_size_cap_with_and_without_content_length(server: _Server, path: str) -> None:
    started = time.monotonic()
    error = _refused(server.url(path), SMALL)
    assert "larger than the limit of 0.1 MB" in str(error)
    # /huge-declared never sends its body: only the Content-Length check can answer before
    # the 5 s timeout.
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("path", ["/stall-headers", "/stall-body", "/trickle"])
def test_overall_timeout(server: _Server, path: str) -> None:
    policy = UrlPolicy(allowlist=("127.0.0.1/32",), timeout_s=0.5)
    started = time.monotonic()
    error = _refused(server.url(path), policy)
    assert "timed out after 0.5 s" in str(error)
    assert time.monotonic() - started < 1.5


def test_deadline_is_strict_when_a_stall_follows_progress(server: _Server) -> None:
    """Per-read socket timeouts alone would allow almost twice the deadline here."""
    policy = UrlPolicy(allowlist=("127.0.0.1/32",), timeout_s=1.0)
    started = time.monotonic()
    error = _refused(server.url("/trickle-then-stall"), policy)
    assert "timed out after 1 s" in str(error)
    assert time.monotonic() - started < 1.4


# --- https: the checked address is dialled, the certificate is checked for the name -----


@pytest.fixture
def tls_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[_Server]:
    ca_pem, cert_pem, key_pem = _make_certificates("localhost")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_context = ssl.create_default_context(cadata=ca_pem.decode())
    monkeypatch.setattr(fetch, "_ssl_context", lambda: client_context)
    for server in _serve("127.0.0.1"):
        server.socket = server_context.wrap_socket(server.socket, server_side=True)
        yield server


def test_https_verifies_the_host_name_not_the_address(tls_server: _Server) -> None:
    url = tls_server.url("/image.png", host="localhost").replace("http:", "https:")
    policy = UrlPolicy(allowlist=("localhost",), timeout_s=5)
    assert fetch_url(url, policy).data == PNG
    # The certificate names only "localhost", so a URL with the bare address must fail.
    error = _refused(tls_server.url("/image.png").replace("http:", "https:"), LOCAL)
    assert "could not connect" in str(error)


def _make_certificates(name: str) -> tuple[bytes, bytes, bytes]:
    """A throw-away CA and a leaf certificate for ``name`` (no IP address in it)."""
    pytest.importorskip("cryptography")
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def build(
        subject: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        is_ca = key is signer
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "apipod test CA")]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )
        if not is_ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("apipod test CA", ca_key, ca_key)
    leaf = build(name, leaf_key, ca_key)
    pem = serialization.Encoding.PEM
    key_pem = leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca.public_bytes(pem), leaf.public_bytes(pem), key_pem


# --- post_url (webhook delivery) ------------------------------------------------------


def test_post_url_sends_the_body_to_an_allowed_host_and_returns_the_status() -> None:
    with receiver([202, 302]) as hook:
        headers = {"Content-Type": "application/json", "X-Test": "1"}
        assert post_url(hook.url, LOCAL, b'{"a":1}', headers) == 202
        assert post_url(hook.url, LOCAL, b"{}", headers) == 302  # never followed
    first, second = hook.received
    assert first.body == b'{"a":1}' and first.headers["x-test"] == "1"
    assert first.headers["host"] == f"127.0.0.1:{hook.server_address[1]}"
    assert second.body == b"{}"


def test_post_url_refuses_non_public_addresses_before_connecting() -> None:
    with receiver() as hook, pytest.raises(MediaError, match="non-public address"):
        post_url(hook.url, UrlPolicy(timeout_s=5), b"{}", {})
    assert hook.received == []


def test_post_url_checks_the_address_again_at_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a webhook host public when the submit checked it, 127.0.0.1 when the
    supervisor delivers."""
    rebind_dns(monkeypatch, "hooks.rebind.test", "93.184.216.34", "127.0.0.1")
    public_only = UrlPolicy(timeout_s=5, label="webhook URL")
    with receiver() as hook:
        url = f"http://hooks.rebind.test:{hook.server_address[1]}/hook"
        check_url(url, public_only)  # at submit: a public address
        with pytest.raises(MediaError, match="webhook URL: host 'hooks.rebind.test' resolves"):
            post_url(url, public_only, b"{}", {})
    assert hook.received == []
