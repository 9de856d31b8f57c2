"""One ``Config``, built once at start.

Precedence (highest first): ``apipod start`` flags > environment (``APIPOD_*``) >
``APIPod(...)`` arguments > ``apipod-deploy/apipod.json`` > defaults. The default
``data_dir`` is ``apipod-data`` beside the service file (:func:`service_defaults`), so one
service finds the same jobs whichever folder it is started from; a ``data_dir`` that is
set is made absolute (from the current directory) the moment it is read, so every process
and every message names the same folder. Every problem (unknown key, bad value,
unsupported provider) raises :class:`ConfigError` with a message that says what to fix.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from apipod.errors import ConfigError
from apipod.logs import LOG_FORMATS

COMPUTE_MODES = ("dedicated", "serverless")
PROVIDERS = ("localhost",)
ROLES = ("all", "api", "workers")
RESULT_IMAGE_FORMATS = ("png", "jpeg")
DEPLOY_FILE = Path("apipod-deploy") / "apipod.json"
DATA_DIR_NAME = "apipod-data"
#: The original APIPod's deployment targets (``apipod simulate``, ``APIPOD_SIMULATE``).
SIMULATE_TARGETS = ("serverless", "dedicated", "serverless-localhost", "dedicated-localhost")


def simulate_target(target: str) -> tuple[str, str]:
    """``(compute, provider)`` of the original APIPod's target ``"{compute}-{provider}"``
    (``""`` is ``serverless``; the provider defaults to ``localhost``). A provider this
    build does not run is refused with the list of those it does."""
    compute, _, provider = (target.strip().lower() or "serverless").partition("-")
    if compute not in COMPUTE_MODES:
        raise ConfigError(
            f"Invalid simulate target {target!r}: use one of {', '.join(SIMULATE_TARGETS)}"
        )
    provider = provider or "localhost"
    if provider not in PROVIDERS:
        raise ConfigError(
            f"simulate target {target!r}: provider {provider!r} is not supported here; "
            f"use one of {PROVIDERS} (targets: {', '.join(SIMULATE_TARGETS)})"
        )
    return compute, provider


@dataclass(frozen=True)
class Config:
    """Every setting of an APIPod service. See DESIGN §6 and the README's table."""

    compute: str = "dedicated"
    provider: str = "localhost"
    host: str = "127.0.0.1"
    port: int = 8000
    max_workers: int = 1
    gpus: str = "auto"
    queue_size: int = 500
    job_ttl: float = 3600.0
    job_timeout: float = 3600.0
    max_attempts: int = 3
    data_dir: str = f"./{DATA_DIR_NAME}"
    database_url: str | None = None
    api_key: str | None = None
    role: str = "all"
    max_upload_file_size_mb: float = 1024.0
    media_url_allowlist: tuple[str, ...] = ()
    media_url_timeout_s: float = 30.0
    media_url_max_mb: float = 512.0
    lease_s: float = 30.0
    worker_start_timeout: float = 600.0
    cancel_grace_s: float = 5.0
    shutdown_grace_s: float = 30.0
    max_jobs_per_worker: int = 0
    worker_max_rss_mb: float = 0.0
    log_level: str = "info"
    #: "text" (for people) or "json" (one object per line, for log collectors).
    log_format: str = "text"
    webhook_secret: str | None = None
    webhook_allowlist: tuple[str, ...] = ()
    webhook_timeout_s: float = 10.0
    #: Long-polls (``?wait=``) waiting at once per API process; past it, answered at once.
    max_waiters: int = 1000
    #: Open client connections per API process; past it, new requests get a 503.
    max_connections: int = 4096
    #: A request's headers must arrive within this time, and its body must not stall longer.
    http_read_timeout_s: float = 15.0
    #: Request bodies held in memory at once per API process; past it, 503 Retry-After.
    max_inflight_mb: float = 256.0
    #: A JSON or urlencoded body (base64 media inside JSON aside, which count as media),
    #: and all non-file fields of a multipart form together, at most this many MB.
    max_json_mb: float = 16.0
    #: Bytes of job inputs and media the store may hold; past it, submits get a 507.
    max_stored_mb: float = 100_000.0
    inline_result_max_mb: float = 8.0
    result_image_format: str = "png"
    #: An OpenAI-compatible call whose client disconnects cancels its job (queue mode).
    cancel_on_disconnect: bool = True
    #: The service's public address (``https://api.example.com``): absolute URLs use it.
    public_url: str | None = None
    #: Host names a request may be addressed to (``*`` for any); empty: the bind address,
    #: ``localhost``, ``127.0.0.1``, ``::1`` and ``public_url``'s host (see README).
    allowed_hosts: tuple[str, ...] = ()
    #: Peers whose ``X-Forwarded-*`` and ``Forwarded`` headers are believed (IPs, networks
    #: or ``*``), as uvicorn's setting of that name.
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        absolute = str(Path(self.data_dir).expanduser().absolute())
        object.__setattr__(self, "data_dir", os.path.normpath(absolute))

    @property
    def queue_enabled(self) -> bool:
        return self.compute == "serverless"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'apipod.db'}"

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        deploy_file: Path | None = None,
        flags: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> Config:
        """Build the config from its sources, highest precedence last applied:
        ``defaults`` (e.g. :func:`service_defaults`), the deploy file, ``overrides``
        (``APIPod(...)`` arguments), ``env``, then ``flags`` (the command line). ``None``
        values never override."""
        env = os.environ if env is None else env
        values: dict[str, Any] = dict(defaults or {})
        values.update(_read_deploy_file(deploy_file or DEPLOY_FILE))
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        values.update(_read_env(env))
        values.update({k: v for k, v in (flags or {}).items() if v is not None})
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Config:
        known = {f.name: f for f in fields(cls) if f.name != "extra"}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown setting(s): {', '.join(unknown)}; known settings: {', '.join(known)}"
            )
        parsed = {name: _parse(name, value) for name, value in values.items()}
        config = cls(**parsed)
        _validate(config)
        return config

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The settings as ``APIPOD_*`` variables, to hand to child processes."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            if isinstance(value, tuple):
                value = ",".join(value)
            out[f"APIPOD_{f.name.upper()}"] = str(value)
        return out


def service_defaults(service_file: str | os.PathLike[str] | None) -> dict[str, str]:
    """The defaults that follow the service file: ``data_dir`` is ``apipod-data`` beside
    it (absolute). Empty when there is no such file (``python -c``, an interactive
    session): the data dir then follows the current directory."""
    if service_file is None or not Path(service_file).is_file():
        return {}
    return {"data_dir": str(Path(service_file).resolve().parent / DATA_DIR_NAME)}


def _read_deploy_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a JSON object with a 'queue' section")
    values: dict[str, Any] = {}
    for section, body in document.items():
        if section not in ("queue", "server", "media"):
            raise ConfigError(f"{path}: unknown section {section!r} (use 'queue', 'server')")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: section {section!r} must be an object")
        values.update(body)
    return values


def _read_env(env: Mapping[str, str]) -> dict[str, Any]:
    names = {f.name for f in fields(Config)} - {"extra"}
    values: dict[str, Any] = {}
    simulate = env.get("APIPOD_SIMULATE", "").strip()
    if simulate:  # the original's variable; APIPOD_COMPUTE/PROVIDER, more specific, win
        values.update(zip(("compute", "provider"), simulate_target(simulate), strict=True))
    for key, value in env.items():
        if not key.startswith("APIPOD_"):
            continue
        name = key[len("APIPOD_") :].lower()
        if name == "api_key" and not value.strip():
            # An empty key must not silently switch off a key set in code.
            raise ConfigError("APIPOD_API_KEY is set but empty; unset it or give a key")
        if name in names:
            values[name] = value
    return values


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _to_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


def _to_optional_str(value: Any) -> str | None:
    text = str(value).strip()
    return text or None


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "str | None": _to_optional_str,
    "bool": _to_bool,
    "tuple[str, ...]": _to_tuple,
}


def _parse(name: str, value: Any) -> Any:
    annotation = next(f.type for f in fields(Config) if f.name == name)
    parser = _PARSERS[str(annotation)]
    if parser in (int, float) and isinstance(value, bool):
        raise ConfigError(f"setting {name}: expected a number, got {value!r}")
    try:
        if parser is int and isinstance(value, str):
            return int(value.strip())
        return parser(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: bad value {value!r} ({exc})") from None


def _validate(config: Config) -> None:
    if config.compute not in COMPUTE_MODES:
        raise ConfigError(f"compute must be one of {COMPUTE_MODES}, got {config.compute!r}")
    if config.provider not in PROVIDERS:
        raise ConfigError(
            f"provider {config.provider!r} is not supported here; use one of {PROVIDERS} "
            "(set APIPOD_PROVIDER or APIPod(provider=...))"
        )
    if config.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format must be one of {LOG_FORMATS}, got {config.log_format!r}")
    if config.role not in ROLES:
        raise ConfigError(f"role must be one of {ROLES}, got {config.role!r}")
    if not 0 < config.port < 65536:
        raise ConfigError(f"port must be in 1..65535, got {config.port}")
    for name in ("max_workers", "queue_size", "max_attempts"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(config, name)}")
    for name in ("job_ttl", "job_timeout", "lease_s", "worker_start_timeout"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(config, name)}")
    for name in ("cancel_grace_s", "shutdown_grace_s", "max_jobs_per_worker", "worker_max_rss_mb"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must not be negative, got {getattr(config, name)}")
    if config.max_upload_file_size_mb <= 0:
        raise ConfigError("max_upload_file_size_mb must be positive")
    if config.max_json_mb <= 0:
        raise ConfigError("max_json_mb must be positive")
    _validate_gpus(config.gpus)
    _validate_results(config)
    _validate_addresses(config)


def _validate_results(config: Config) -> None:
    if config.inline_result_max_mb < 0:
        raise ConfigError("inline_result_max_mb must not be negative")
    if config.result_image_format not in RESULT_IMAGE_FORMATS:
        raise ConfigError(
            f"result_image_format must be one of {RESULT_IMAGE_FORMATS}, "
            f"got {config.result_image_format!r}"
        )


def _validate_addresses(config: Config) -> None:
    url = config.public_url
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ConfigError(
                f"public_url must be an http(s) URL like https://api.example.com, got {url!r}"
            )
    for entry in config.forwarded_allow_ips:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"forwarded_allow_ips: {entry!r} is not an IP address, a network or '*'"
            ) from None


def _validate_gpus(gpus: str) -> None:
    if gpus in ("auto", "none"):
        return
    parts = [p.strip() for p in gpus.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError(f"gpus must be 'auto', 'none' or a list like '0,1', got {gpus!r}")
