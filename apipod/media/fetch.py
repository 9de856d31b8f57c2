"""Download a media input given as an http(s) URL, guarded against SSRF.

The host is resolved here, every address is checked against the policy, and the request
goes to the checked address itself (the name is never resolved again, so DNS rebinding
cannot swap in another address). Redirects are followed by hand and every hop is checked
the same way. One deadline covers the whole download, and the body is capped in size.

A download runs in a thread of its own that ends with it: every socket it opens is
registered with a :class:`FetchGuard`, which shuts them down when the deadline passes or
the request that wanted the file ends (answered or abandoned), so a thread blocked reading
a server that dribbles bytes returns at once and its connection closes.
"""

from __future__ import annotations

import email.message
import functools
import ipaddress
import logging
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import httpx

from apipod.errors import MediaError, MediaTooLarge
from apipod.media.guard import FetchGuard, guarded_transport
from apipod.media.names import FALLBACK_NAME, safe_name
from apipod.media.urlpolicy import (
    IPAddress,
    UrlPolicy,
    compile_allowlist,
    host_allowed,
    host_names,
    in_networks,
    is_public,
)

logger = logging.getLogger(__name__)

_SCHEMES = ("http", "https")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
SPOOL_MEMORY_BYTES = 1 << 20
#: How often a caller waiting for a download looks whether its request was cancelled.
CANCEL_CHECK_S = 0.05
_HEADERS = {"Accept": "*/*", "Accept-Encoding": "identity", "User-Agent": "apipod-media-fetch"}


@dataclass(frozen=True)
class FetchedMedia:
    """A downloaded media input: ``size`` bytes in ``file`` (a spooled temporary file,
    on disk past 1 MB, positioned at its start)."""

    file: IO[bytes]
    size: int
    content_type: str | None
    file_name: str | None

    @property
    def data(self) -> bytes:
        """The whole content in memory (small files and tests only)."""
        self.file.seek(0)
        data = self.file.read()
        self.file.seek(0)
        return data


def fetch_url(
    url: str,
    policy: UrlPolicy,
    field: str | None = None,
    max_bytes: int | None = None,
    guard: FetchGuard | None = None,
) -> FetchedMedia:
    """Download ``url`` under ``policy``; ``field`` names the input in error messages.

    Raises :class:`MediaError` when the URL is refused (scheme, credentials, an address
    the policy does not allow, too many redirects), the download fails or answers a
    non-2xx status or a compressed body (``Content-Encoding``), the body exceeds
    ``policy.max_bytes`` (or ``max_bytes``, what is left of a request's media budget),
    or ``policy.timeout_s`` passes, or ``guard`` is cancelled (the request ended). Blocks
    the calling thread; returns or raises within ``policy.timeout_s``, and its download
    thread and connection end with it.
    """
    limit = policy.max_bytes if max_bytes is None else min(policy.max_bytes, max_bytes)
    deadline = time.monotonic() + policy.timeout_s
    job = _Job(policy, field, deadline, guard or FetchGuard(), limit)
    if job.guard.is_set():
        raise job.refuse("the request ended before the download started", log=False)
    outcome: list[FetchedMedia | BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(_download(url, job))
        except MediaError as exc:  # handed to the caller's thread below
            outcome.append(exc)
        except Exception as exc:  # a URL or response no check foresaw: still the client's
            logger.info("media download from %r failed unexpectedly", url, exc_info=True)
            outcome.append(job.refuse(f"could not fetch the URL ({type(exc).__name__})"))
        finally:
            done.set()

    # The download runs in its own thread so that the caller gets its answer by the
    # deadline even while getaddrinfo or a socket operation is still blocked.
    worker = threading.Thread(target=work, name="apipod-media-fetch", daemon=True)
    worker.start()
    while not done.wait(min(CANCEL_CHECK_S, job.remaining())):
        if job.guard.is_set() or job.remaining() <= 0:
            break
    if not outcome:
        job.guard.cancel()  # the thread's socket shuts: it ends now, not at its read
        raise job.timed_out()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def check_url(url: str, policy: UrlPolicy) -> None:
    """Raise :class:`MediaError` now for a URL that ``policy`` refuses (scheme,
    credentials, a host that resolves to an address not allowed), as a request would."""
    job = _Job.unbound(policy)
    _allowed_addresses(_parse_url(url, job), job)


def post_url(url: str, policy: UrlPolicy, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body`` to ``url`` behind the same guard as downloads (the address is checked,
    then used; redirects are not followed); the response's status code. Raises
    :class:`MediaError` when the URL is refused or the request fails or times out."""
    job = _Job.unbound(policy)
    parsed = _parse_url(url, job)
    addresses = _allowed_addresses(parsed, job)
    request = {"method": "POST", "content": body, "headers": headers}
    with _open(parsed, addresses, job, **request) as response:
        return response.status_code


@dataclass(frozen=True)
class _Job:
    """One call of :func:`fetch_url`: its policy, its deadline, and its error messages."""

    policy: UrlPolicy
    field: str | None
    deadline: float
    guard: FetchGuard
    max_bytes: int

    @classmethod
    def unbound(cls, policy: UrlPolicy) -> _Job:
        """A call that belongs to no media input (a webhook): the policy's own limits."""
        return cls(
            policy, None, time.monotonic() + policy.timeout_s, FetchGuard(), policy.max_bytes
        )

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def refuse(
        self, reason: str, *, log: bool = True, error: type[MediaError] = MediaError
    ) -> MediaError:
        label = f"media input '{self.field}'" if self.field else self.policy.label
        if log:
            logger.info("refused %s: %s", label, reason)
        return error(f"{label}: {reason}", field=self.field)

    def timed_out(self) -> MediaError:
        return self.refuse(f"download timed out after {self.policy.timeout_s:g} s", log=False)

    def too_large(self) -> MediaError:
        limit = self.max_bytes / 1_000_000
        return self.refuse(
            f"the file is larger than the limit of {limit:g} MB", error=MediaTooLarge
        )

    def failed(self, url: httpx.URL, exc: Exception | None) -> MediaError:
        """A short reason for a transport failure; the exception text goes to the log only."""
        logger.debug("media download from %s failed: %r", _describe(url), exc)
        if isinstance(exc, httpx.TimeoutException):
            return self.timed_out()
        if isinstance(exc, httpx.RemoteProtocolError):
            return self.refuse(f"host '{url.host}' sent an invalid HTTP response", log=False)
        if isinstance(exc, httpx.ConnectError) or exc is None:
            return self.refuse(f"could not connect to host '{url.host}'", log=False)
        return self.refuse(f"the download from host '{url.host}' broke off", log=False)


# --- the download ------------------------------------------------------------------


def _download(raw_url: str, job: _Job) -> FetchedMedia:
    url = _parse_url(raw_url, job)
    seen = {str(url)}
    for _hop in range(job.policy.max_redirects + 1):
        addresses = _allowed_addresses(url, job)
        with _open(url, addresses, job) as response:
            location = _redirect_target(response, url, job)
            if location is None:
                file, size = _read_body(response, job)
                logger.debug("fetched %d bytes from %s", size, _describe(url))
                return FetchedMedia(file, size, _content_type(response), _file_name(response, url))
        url = _parse_url(location, job)
        if str(url) in seen:
            raise job.refuse(f"redirect loop at host '{url.host}'")
        seen.add(str(url))
    raise job.refuse(f"too many redirects (more than {job.policy.max_redirects})")


def _parse_url(raw_url: str, job: _Job) -> httpx.URL:
    try:
        url = httpx.URL(raw_url)
        url.raw_host.decode("ascii"), url.host  # noqa: B018 - IDNA errors show here
        url = url.copy_with(fragment=None)
    except (httpx.InvalidURL, TypeError, ValueError):  # UnicodeError is a ValueError
        raise job.refuse("not a valid URL") from None
    if url.scheme not in _SCHEMES:
        shown = f"scheme '{url.scheme}'" if url.scheme else "a URL without a scheme"
        raise job.refuse(f"{shown} is not allowed; only http and https URLs are fetched")
    if url.userinfo:
        raise job.refuse("URLs with credentials (user:password@) are not allowed")
    if not url.raw_host:
        raise job.refuse("the URL has no host")
    return url


def _allowed_addresses(url: httpx.URL, job: _Job) -> list[str]:
    """Resolve the URL's host; every address must pass the policy, or nothing is fetched."""
    addresses = _resolve(url, job)
    networks, host_patterns = compile_allowlist(job.policy.allowlist, job.policy.allowlist_setting)
    if host_allowed(host_names(url), host_patterns):
        return [str(ip) for ip in addresses]
    for ip in addresses:
        if not (is_public(ip) or in_networks(ip, networks)):
            logger.info("refused %s %s: %s is not public", job.policy.label, _describe(url), ip)
            raise job.refuse(
                f"host '{url.host}' resolves to a non-public address; only public hosts are "
                f"reached unless the operator allow-lists them ({job.policy.allowlist_setting})",
                log=False,
            )
    return [str(ip) for ip in addresses]


def _resolve(url: httpx.URL, job: _Job) -> list[IPAddress]:
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]))
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise job.refuse(f"could not resolve host '{host}'", log=False)
    return addresses


@contextmanager
def _open(
    url: httpx.URL, addresses: list[str], job: _Job, **request: Any
) -> Iterator[httpx.Response]:
    """Send the request (a GET, or ``request``: method, content, headers) to the first
    checked address that accepts a connection."""
    if job.remaining() <= 0:
        raise job.timed_out()
    # trust_env=False: a proxy from the environment would resolve the name itself and
    # undo the address check. A client per hop: no pooled connection or cookie is reused
    # between host names that share an address.
    with httpx.Client(
        transport=guarded_transport(job.guard, _ssl_context()),
        trust_env=False,
        follow_redirects=False,
        timeout=job.remaining(),
    ) as client:
        response = _send_first(client, url, addresses, job, **request)
        try:
            yield response
        except httpx.HTTPError as exc:
            raise job.failed(url, exc) from None
        finally:
            response.close()


def _send_first(
    client: httpx.Client,
    url: httpx.URL,
    addresses: list[str],
    job: _Job,
    method: str = "GET",
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    headers = {**_HEADERS, **(headers or {}), "Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    logger.debug("fetching %s via %s", _describe(url), ", ".join(addresses))
    last_error: httpx.HTTPError | None = None
    for address in addresses:
        request = client.build_request(
            method,
            url.copy_with(host=address),
            headers=headers,
            content=content,
            extensions=extensions,
        )
        try:
            return client.send(request, stream=True)
        except httpx.ConnectError as exc:
            last_error = exc  # try the next address
        except httpx.HTTPError as exc:
            raise job.failed(url, exc) from None
    raise job.failed(url, last_error)


def _redirect_target(response: httpx.Response, url: httpx.URL, job: _Job) -> str | None:
    """The absolute URL a redirect points to; ``None`` for a 2xx; MediaError otherwise."""
    if 200 <= response.status_code < 300:
        return None
    location = response.headers.get("location")
    if response.status_code in _REDIRECTS and location:
        try:
            return str(url.join(location))
        except (httpx.InvalidURL, ValueError):
            raise job.refuse("a redirect points to an invalid URL") from None
    raise job.refuse(
        f"host '{url.host}' answered with HTTP status {response.status_code}", log=False
    )


def _read_body(response: httpx.Response, job: _Job) -> tuple[IO[bytes], int]:
    """The body, as sent (never inflated), in a spooled file; and its size."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # We asked for identity. Inflating would turn a small download into any size.
        raise job.refuse(f"the server sent a compressed body (Content-Encoding: {encoding})")
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > job.max_bytes:
        raise job.too_large()
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
    try:
        size = 0
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > job.max_bytes:
                raise job.too_large()
            if job.guard.is_set() or job.remaining() <= 0:
                raise job.timed_out()
            body.write(chunk)
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body, size


# --- response metadata ---------------------------------------------------------------


def _content_type(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return value or None


def _file_name(response: httpx.Response, url: httpx.URL) -> str | None:
    disposition = response.headers.get("content-disposition")
    if disposition:
        message = email.message.Message()
        message["content-disposition"] = disposition
        name = message.get_filename()
        if name and safe_name(name) != FALLBACK_NAME:
            return safe_name(name)
    name = safe_name(url.path.rsplit("/", 1)[-1])
    return None if name == FALLBACK_NAME else name


# --- helpers -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def _describe(url: httpx.URL) -> str:
    """The URL for logs, without the query, which may carry a signed token."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.raw_path.split(b'?')[0].decode()}"
