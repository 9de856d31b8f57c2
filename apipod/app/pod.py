"""``APIPod``: a FastAPI application whose endpoints are plain Python functions."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
import unicodedata
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import fields
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from apipod import __version__
from apipod.app import openapi
from apipod.app.auth import ApiKeyMiddleware
from apipod.app.budget import InflightBudget
from apipod.app.calls import (
    call_endpoint,
    close_payloads,
    media_objects,
    read_media_inputs,
)
from apipod.app.docs import install_docs
from apipod.app.fastpath import FastPath
from apipod.app.files import install_file_routes
from apipod.app.health import install_health
from apipod.app.hosts import HostGuard
from apipod.app.http_errors import install_error_handlers
from apipod.app.idempotency import REPLAYED_HEADER
from apipod.app.inputs import BodyLimits, RawInputs, read_inputs
from apipod.app.openai import OpenAIRoutes
from apipod.app.queue import QueueFrontEnd, install_job_routes, until_disconnect, wait_seconds
from apipod.app.stream import StreamHub, install_stream_route, sync_stream_response
from apipod.app.submit import enqueue
from apipod.config import (
    RESULT_IMAGE_FORMATS,
    Config,
    service_defaults,
    simulate_target,
)
from apipod.endpoint import EndpointSpec, build_spec
from apipod.errors import APIPodError, ConfigError, EndpointDefinitionError, client_error_text
from apipod.media.guard import FetchGuard
from apipod.media.urlpolicy import UrlPolicy
from apipod.progress import JobProgress
from apipod.store.records import Job
from apipod.worker.embedded import EmbeddedWorker

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
#: Threads that read media inputs (URL downloads, base64 decoding) at once per process.
MEDIA_THREADS = 16
_SETTINGS = frozenset(f.name for f in fields(Config)) - {"extra"}


class APIPod(FastAPI):
    """A FastAPI app: ``@app.endpoint`` turns functions into routes.

    ``APIPod()`` serves calls synchronously ("dedicated"); ``APIPod(compute="serverless",
    provider="localhost")`` puts every call in a durable FIFO job queue run by worker
    processes. Any setting of :class:`apipod.config.Config` can be passed as a keyword;
    other keywords go to FastAPI (``title``, ``description``, ...).
    """

    def __init__(
        self,
        compute: str | None = None,
        provider: str | None = None,
        simulate: str | None = None,
        **kwargs: Any,
    ):
        settings = {k: kwargs.pop(k) for k in list(kwargs) if k in _SETTINGS}
        if simulate is not None:
            compute, provider = _from_simulate(simulate, compute, provider)
        settings.update(compute=compute, provider=provider)
        self.settings: dict[str, Any] = {k: v for k, v in settings.items() if v is not None}
        self.source_file = _caller_file()
        self.config = Config.load(self.settings, defaults=service_defaults(self.source_file))
        self.endpoints: dict[str, EndpointSpec] = {}
        self.worker_start_hooks: list[Callable[[], Any]] = []
        self.queue = QueueFrontEnd(self.config)
        self.inflight = self.queue.inflight = InflightBudget(int(self.config.max_inflight_mb * 1e6))
        self._media_pool = ThreadPoolExecutor(MEDIA_THREADS, thread_name_prefix="apipod-media")
        self._component_schemas: dict[str, Any] = {}
        self._handlers: dict[str, Callable[[Request], Awaitable[Response]]] = {}
        self._literal_routes: dict[str, EndpointSpec] = {}
        #: True in the API process of ``apipod start``: jobs run in worker processes only.
        self.api_only = False
        self.embedded_worker: EmbeddedWorker | None = None
        kwargs.setdefault("title", "APIPod service")
        docs_url, redoc_url = kwargs.pop("docs_url", "/docs"), kwargs.pop("redoc_url", "/redoc")
        super().__init__(lifespan=self._lifespan, docs_url=None, redoc_url=None, **kwargs)
        install_docs(self, docs_url, redoc_url)
        install_error_handlers(self)
        install_health(self)
        self.stream_hub: StreamHub | None = None
        self._openai = OpenAIRoutes(self)
        if self.config.queue_enabled:
            install_job_routes(self, self.queue)
            self.stream_hub = install_stream_route(self, self.queue)
            install_file_routes(self, self.queue)
        self.add_middleware(
            ApiKeyMiddleware,
            key_of=lambda: self.config.api_key,
            unauthorized=self._openai.unauthorized,
        )

    # --- configuration ---------------------------------------------------------------------
    def configure(self, **flags: Any) -> Config:
        """Re-read the config with command-line flags, which win over everything."""
        defaults = service_defaults(self.source_file)
        self.apply_config(Config.load(self.settings, flags=flags, defaults=defaults))
        return self.config

    def apply_config(self, config: Config) -> None:
        """Use ``config`` as it is (child processes get the supervisor's final config)."""
        self.config = config
        self.queue.config = config
        self.inflight = self.queue.inflight = InflightBudget(int(config.max_inflight_mb * 1e6))
        self.openapi_schema = None
        has_job_routes = any(getattr(r, "path", None) == "/jobs" for r in self.routes)
        if config.queue_enabled and not has_job_routes:
            install_job_routes(self, self.queue)
            self.stream_hub = install_stream_route(self, self.queue)
            install_file_routes(self, self.queue)

    @property
    def url_policy(self) -> UrlPolicy:
        return UrlPolicy.from_config(self.config)

    # --- decorators ------------------------------------------------------------------------
    def endpoint(
        self,
        path: str,
        methods: list[str] | None = None,
        max_upload_file_size_mb: float | None = None,
        queue_size: int | None = None,
        use_queue: bool | None = None,
        summary: str | None = None,
        tags: list[str] | None = None,
        job_timeout: float | None = None,
        batch_size: int = 1,
        batch_wait_ms: float = 0,
        result_image_format: str | None = None,
    ) -> Callable[[F], F]:
        """Register ``func`` as an endpoint at ``path`` (POST unless ``methods`` says).

        ``queue_size`` (default: the ``queue_size`` setting, 500) bounds the jobs waiting
        for this endpoint; ``use_queue=False`` keeps it synchronous in queue mode;
        ``job_timeout`` overrides the ``job_timeout`` setting for its jobs;
        ``result_image_format`` ("png" or "jpeg") overrides the ``result_image_format``
        setting for images the function returns as arrays or PIL images.
        The route is normalised as the original APIPod did (``/Single_File`` is served at
        ``/single-file``); the path as written answers too, hidden from the schema.
        ``batch_size=N`` (N > 1) runs up to N queued jobs in one call: the function gets
        one list per parameter (annotate each as ``list[...]``) and returns a list of N
        results (an exception instance as a result fails only its job); a worker waits
        up to ``batch_wait_ms`` for more jobs when fewer than N are queued.
        """
        literal = "/" + path.lstrip("/")
        verbs = [m.upper() for m in (methods or ["POST"])]
        if result_image_format not in (None, *RESULT_IMAGE_FORMATS):
            raise ValueError(f"result_image_format must be one of {RESULT_IMAGE_FORMATS}")

        def register(func: F) -> F:
            spec = build_spec(
                func,
                normalise_route(literal),
                methods=verbs,
                max_upload_file_size_mb=max_upload_file_size_mb,
                queue_size=queue_size,
                use_queue=use_queue,
                job_timeout=job_timeout,
                result_image_format=result_image_format,
                summary=summary,
                tags=tags,
                batch_size=batch_size,
                batch_wait_ms=batch_wait_ms,
            )
            self._add_endpoint(spec, literal)
            return func

        return register

    def post(self, path: str, **options: Any) -> Callable[[F], F]:  # type: ignore[override]
        """Alias of ``endpoint(path, methods=["POST"], ...)``."""
        return self.endpoint(path, methods=["POST"], **options)

    def get(self, path: str, **options: Any) -> Callable[[F], F]:  # type: ignore[override]
        """Alias of ``endpoint(path, methods=["GET"], ...)``."""
        return self.endpoint(path, methods=["GET"], **options)

    def on_worker_start(self, func: F) -> F:
        """Run ``func`` once per worker process before it takes jobs (load models here).
        In synchronous mode it runs once before the first request is served."""
        self.worker_start_hooks.append(func)
        return func

    @property
    def app(self) -> APIPod:
        """The FastAPI application: this object (the original APIPod's ``app.app``, which
        users pass to uvicorn, ``TestClient`` and middleware)."""
        return self

    def include_router(self, router: Any, *args: Any, **kwargs: Any) -> None:
        """FastAPI's ``include_router``; including the app in itself (the original's
        ``app.app.include_router(app)``) does nothing: its routes are already here."""
        if router is self:
            return
        super().include_router(router, *args, **kwargs)

    def start(self, port: int | None = None, host: str | None = None, **settings: Any) -> None:
        """Run the whole system: the server, and in queue mode the worker processes.

        ``start(8019)`` or ``start(port=8019, host="0.0.0.0")`` (the original APIPod's
        order); ``settings`` are those of ``apipod start`` (``max_workers=2``, ...).
        A problem found at start (port in use, bad setting) is logged as one line and
        ends the program with exit code 2, as the ``apipod`` command does.
        """
        from apipod.cli import start_app

        if isinstance(port, str) and not port.strip().isdigit():
            # start(host, port): the order this project used before it followed the original
            warnings.warn(
                "app.start(host, port) is deprecated: the order is start(port, host)",
                DeprecationWarning,
                stacklevel=2,
            )
            port, host = host, port  # type: ignore[assignment]
        start_app(self, port=int(port) if port is not None else None, host=host, **settings)

    # --- routes ----------------------------------------------------------------------------
    def _add_endpoint(self, spec: EndpointSpec, literal: str) -> None:
        taken = self.endpoints.get(spec.path) or self._literal_routes.get(literal)
        if taken is not None:
            raise EndpointDefinitionError(
                f"{spec.name} at {literal!r} and {taken.name} both serve the route "
                f"{spec.path!r} (routes are lower case with '-' for '_'); rename one"
            )
        self.endpoints[spec.path] = spec
        openai_handler = self._openai.handler_for(spec)  # None unless it is an OpenAI one
        handler = openai_handler or self._make_handler(spec)
        self._handlers[spec.path] = handler
        if literal != spec.path:
            self._literal_routes[literal] = spec
            self.add_api_route(
                literal, handler, methods=spec.methods, name=spec.name, include_in_schema=False
            )
        for method in spec.methods:  # one route per method: unique OpenAPI operation ids
            if openai_handler is None:
                extra, components = openapi.operation_extra(spec, self.is_queued(spec), method)
            else:
                extra, components = self._openai.operation_extra(spec)
            self._component_schemas.update(components)
            self.add_api_route(
                spec.path,
                handler,
                methods=[method],
                name=spec.name,
                summary=spec.summary,
                tags=spec.tags,
                description=inspect.getdoc(spec.func),
                openapi_extra=extra,
            )

    def spec_for(self, path: str) -> EndpointSpec | None:
        """The endpoint at ``path``, normalised or as written (jobs queued by a version
        that stored the literal path still find their endpoint)."""
        return self.endpoints.get(path) or self._literal_routes.get(path)

    def queued_routes(self) -> list[str]:
        """The endpoint paths whose jobs workers run, normalised and as written."""
        specs = [*self.endpoints.items(), *self._literal_routes.items()]
        return [path for path, spec in specs if self.is_queued(spec)]

    def is_queued(self, spec: EndpointSpec) -> bool:
        return self.config.queue_enabled and spec.use_queue is not False

    def _make_handler(self, spec: EndpointSpec) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            limit = int((spec.max_upload_file_size_mb or self.config.max_upload_file_size_mb) * 1e6)
            limits = BodyLimits(limit, int(self.config.max_json_mb * 1e6))
            memory = self.inflight.open()  # the body's bytes while they are held
            raw: RawInputs | None = None
            payloads: dict[str, Any] = {}
            try:
                raw = await read_inputs(request, spec, limits, memory)
                plain, files = spec.split_files(raw.values)
                values = spec.validate_values(plain, given=raw.values)
                payloads = await self._read_media(request, spec, files, limit)
                if self.is_queued(spec):
                    return await self._submit(request, spec, values, payloads)
                return await self._run_now(spec, values, payloads)
            except (APIPodError, HTTPException):
                raise
            except Exception as exc:
                # Answered here rather than by Starlette's last-resort handler, which
                # re-raises and makes the server drop the keep-alive connection. The
                # client reads "Type: message"; the traceback goes to the log only.
                logger.exception("endpoint %s raised", spec.path)
                return JSONResponse({"detail": client_error_text(exc)}, status_code=500)
            finally:
                close_payloads(payloads)
                if raw is not None:
                    await raw.close()
                memory.close()

        return handler

    async def _read_media(
        self, request: Request, spec: EndpointSpec, files: dict[str, Any], limit: int
    ) -> dict:
        if not files:
            return {}
        # Own threads: slow downloads never hold those that serve status reads and /health.
        # No download outlives its request: a client that hangs up stops them at once.
        guard = FetchGuard()
        read = functools.partial(read_media_inputs, spec, files, self.url_policy, limit, guard)
        gone = asyncio.create_task(until_disconnect(request.receive, guard.cancel))
        try:
            return await asyncio.get_running_loop().run_in_executor(self._media_pool, read)
        finally:
            gone.cancel()
            guard.cancel()

    async def _run_now(self, spec: EndpointSpec, values: dict, payloads: dict) -> Response:
        if payloads:
            media = await run_in_threadpool(media_objects, spec, payloads)
        else:
            media = media_objects(spec, {})  # only the defaults: no I/O
        kwargs = spec.call_arguments(values, media)
        if spec.is_stream:
            return sync_stream_response(spec, kwargs)
        image_format = spec.result_image_format or self.config.result_image_format
        result = await call_endpoint(spec, kwargs, JobProgress(), image_format)
        return JSONResponse(result)

    async def _submit(
        self, request: Request, spec: EndpointSpec, values: dict, payloads: dict
    ) -> Response:
        wait = wait_seconds(request)
        job, replayed = await self.enqueue(request, spec, values, payloads)
        if wait:
            job = await self.queue.wait_terminal(job.id, wait, request.receive) or job
        response = await self.queue.respond(job, request)
        if replayed:
            response.headers[REPLAYED_HEADER] = "true"
        return response

    async def enqueue(
        self, request: Request, spec: EndpointSpec, values: dict, payloads: dict
    ) -> tuple[Job, bool]:
        """Store a job for ``spec``: :func:`apipod.app.submit.enqueue`."""
        return await enqueue(self.queue, self.config, request, spec, values, payloads)

    # --- lifecycle and docs ------------------------------------------------------------------
    @asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        if self.config.queue_enabled:
            await self.queue.start()
            try:
                await self._start_embedded_worker()
            except BaseException:
                await self.queue.stop()
                raise
        else:
            await self.run_worker_start_hooks()
        try:
            yield
        finally:
            if self.embedded_worker is not None:
                await run_in_threadpool(self.embedded_worker.stop)
                self.embedded_worker = None
            if self.config.queue_enabled:
                await self.queue.stop()

    async def _start_embedded_worker(self) -> None:
        """Outside ``apipod start`` (a TestClient, ``uvicorn service:app``), queue mode
        runs its jobs here, as the original APIPod did; never with role "api"."""
        if self.api_only or self.config.role == "api":
            return
        worker = EmbeddedWorker(self, self.queue.store, self.config)
        worker.start()
        self.embedded_worker = worker
        try:
            await run_in_threadpool(worker.wait_ready)
        except BaseException:
            await run_in_threadpool(worker.stop)
            self.embedded_worker = None
            raise

    async def run_worker_start_hooks(self) -> None:
        for hook in self.worker_start_hooks:
            logger.info("running on_worker_start hook %s", hook.__name__)
            if inspect.iscoroutinefunction(hook):
                await hook()
            else:
                await run_in_threadpool(hook)

    def build_middleware_stack(self) -> ASGIApp:
        """FastAPI's stack, behind the fast path for endpoint calls and status reads
        (skipped when the user added middleware of their own, so it always applies),
        all behind the host check (apipod.app.hosts)."""
        stack = super().build_middleware_stack()
        if any(m.cls is not ApiKeyMiddleware for m in self.user_middleware):
            return HostGuard(stack, lambda: self.config)
        routes = {
            (method, path): self._handlers[spec.path]
            for path, spec in [*self.endpoints.items(), *self._literal_routes.items()]
            for method in spec.methods
        }
        routes.update(self._openai.fast_routes())
        status = self.queue.status_handler if self.config.queue_enabled else None
        return HostGuard(FastPath(self, stack, routes, status), lambda: self.config)

    async def error_response(self, request: Request, exc: Exception) -> Response:
        """The response the registered exception handlers give for ``exc``."""
        for cls in type(exc).__mro__:
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                return await handler(request, exc)
        raise exc

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            schema["info"]["apipod"] = {"compute": self.config.compute, "version": __version__}
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(self._component_schemas)
            schemas.setdefault("JobResult", openapi.JOB_RESULT_SCHEMA)
            for title, file_model in openapi.FILE_MODEL_SCHEMAS.items():
                schemas.setdefault(title, file_model)
            openapi.user_endpoints_first(schema, self.endpoints)
            self.openapi_schema = schema
        return self.openapi_schema


def normalise_route(path: str) -> str:
    """The route the original APIPod served for ``path``: lower case, accents dropped,
    every run of characters other than a-z, 0-9 and '/' turned into one '-'."""
    text = unicodedata.normalize("NFD", path.lower().replace("\\", "/"))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"/+", "/", re.sub(r"[^a-z0-9/]+", "-", text))
    text = text.strip("-")
    return text if text.startswith("/") else "/" + text


def _from_simulate(simulate: str, compute: str | None, provider: str | None) -> tuple[str, str]:
    """``compute`` and ``provider`` from the original APIPod's ``simulate="serverless"``
    (or ``"serverless-localhost"``, ``"dedicated"``)."""
    if compute is not None or provider is not None:
        raise ConfigError("Invalid arguments: pass either simulate= or compute=/provider=")
    mode, where = simulate_target(simulate)
    warnings.warn(
        f"APIPod(simulate={simulate!r}) is deprecated; "
        f"use APIPod(compute={mode!r}, provider={where!r})",
        DeprecationWarning,
        stacklevel=3,
    )
    return mode, where


def _caller_file() -> str | None:
    frame = inspect.currentframe()
    outer = inspect.getouterframes(frame)[2] if frame else None
    return outer.filename if outer else None
