"""The OpenAI-compatible routes of an APIPod app. An endpoint typed with one of the
request models is served at its own path and at OpenAI's (``/v1/chat/completions``...);
``GET /v1/models`` lists these endpoints. The rest of the app only asks
:meth:`OpenAIRoutes.handler_for` whether an endpoint is one of them."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from apipod.app.auth import unauthorized_response
from apipod.app.calls import media_objects
from apipod.app.inputs import BodyLimits
from apipod.app.openai import errors, jobs
from apipod.app.openai.answer import Reply, answer, respond, streams, value_records
from apipod.app.openai.bodies import make_call, read_document
from apipod.app.openai.errors import JobEndedBadly, ModelNotFound, openai_error
from apipod.app.openai.execute import call_now
from apipod.app.openai.kinds import Binding, Kind, binding_of
from apipod.app.stream import KEEPALIVE_S, EventStream
from apipod.endpoint import EndpointSpec
from apipod.store.records import Job, JobStatus

if TYPE_CHECKING:
    from apipod.app.pod import APIPod

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
MODELS_PATH = "/v1/models"
_PREFIXES = {"chat": "chatcmpl-", "completion": "cmpl-"}


class OpenAIRoutes:
    """Owns the OpenAI layer of one app: its bindings, routes and error shape."""

    def __init__(self, app: APIPod) -> None:
        self._app = app
        self._bindings: dict[str, list[Binding]] = {}
        self._handlers: dict[str, Handler] = {}

    # --- registration ----------------------------------------------------------------------
    def handler_for(self, spec: EndpointSpec) -> Handler | None:
        """The handler of ``spec``'s own path when it is an OpenAI endpoint, else None."""
        binding = binding_of(spec)
        if binding is None:
            return None
        spec.streams_returned_iterators = True
        bindings = self._bindings.setdefault(binding.kind.name, [])
        bindings.append(binding)
        if len(bindings) == 1:
            self._install(binding.kind)

        async def handler(request: Request) -> Response:
            return await self.serve(request, binding.kind, binding)

        return handler

    def _install(self, kind: Kind) -> None:
        async def handler(request: Request) -> Response:
            return await self.serve(request, kind)

        self._handlers[kind.path] = handler
        extra, components = self.operation_extra_for(kind.request)
        self._app.add_api_route(
            kind.path, handler, methods=["POST"], tags=["openai"], openapi_extra=extra
        )
        self._app._component_schemas.update(components)
        if MODELS_PATH not in self._handlers:
            self._handlers[MODELS_PATH] = self._models
            self._app.add_api_route(MODELS_PATH, self._models, methods=["GET"], tags=["openai"])
            self._app.add_api_route(
                MODELS_PATH + "/{model_id}", self._model, methods=["GET"], tags=["openai"]
            )

    def fast_routes(self) -> dict[tuple[str, str], Handler]:
        """The OpenAI routes the app's fast path may serve directly."""
        return {("POST", p): h for p, h in self._handlers.items() if p != MODELS_PATH}

    def operation_extra(self, spec: EndpointSpec) -> tuple[dict[str, Any], dict[str, Any]]:
        binding = binding_of(spec)
        assert binding is not None
        return self.operation_extra_for(binding.model)

    @staticmethod
    def operation_extra_for(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request body of an OpenAI route: the request model, as JSON."""
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components = {**schema.pop("$defs", {}), model.__name__: schema}
        ref = {"$ref": f"#/components/schemas/{model.__name__}"}
        body = {"required": True, "content": {"application/json": {"schema": ref}}}
        return {"requestBody": body}, components

    def unauthorized(self, scope: Scope) -> Response:
        """The 401 answer: OpenAI's error shape on OpenAI routes."""
        path = scope.get("path", "")
        spec = self._app.spec_for(path)
        if path.startswith("/v1/") or (spec is not None and binding_of(spec) is not None):
            return errors.unauthorized()
        return unauthorized_response()

    # --- serving ---------------------------------------------------------------------------
    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [self._model_card(b) for b in self._all()]})

    async def _model(self, request: Request, model_id: str) -> Response:
        for binding in self._all():
            if model_id in (binding.model_id, binding.spec.name):
                return JSONResponse(self._model_card(binding))
        known = [b.model_id for b in self._all()]
        return await openai_error(self._app, request, ModelNotFound(model_id, known))

    def _all(self) -> list[Binding]:
        return [b for bindings in self._bindings.values() for b in bindings]

    @staticmethod
    def _model_card(binding: Binding) -> dict[str, Any]:
        return {"id": binding.model_id, "object": "model", "created": 0, "owned_by": "apipod"}

    def _pick(self, kind: Kind, model: Any) -> Binding:
        bindings = self._bindings[kind.name]
        if len(bindings) == 1:
            return bindings[0]
        for binding in bindings:
            if model in (binding.model_id, binding.spec.name, binding.spec.path):
                return binding
        raise ModelNotFound(str(model or ""), [b.model_id for b in bindings])

    async def serve(self, request: Request, kind: Kind, binding: Binding | None = None):
        """One OpenAI call, at OpenAI's path (``binding`` None: the request's ``model``
        picks the endpoint) or at an endpoint's own path."""
        app = self._app
        spec = (binding or self._bindings[kind.name][0]).spec
        limit = int((spec.max_upload_file_size_mb or app.config.max_upload_file_size_mb) * 1e6)
        limits = BodyLimits(limit, int(app.config.max_json_mb * 1e6))
        memory = app.inflight.open()
        try:
            document = await read_document(
                request, kind, binding or self._bindings[kind.name][0], limits, memory
            )
            binding = binding or self._pick(kind, document.get("model"))
            call = make_call(binding, document)
            values = binding.spec.validate_values({binding.param: call.request})
            model = getattr(call.request, "model", None) or binding.model_id
            reply = Reply(binding, call, "", str(model), int(time.time()))
            if app.is_queued(binding.spec):
                return await self._queued(request, reply, values)
            return await self._now(reply, values)
        except Exception as exc:
            return await openai_error(app, request, exc)
        finally:
            memory.close()

    async def _now(self, reply: Reply, values: dict[str, Any]) -> Response:
        spec = reply.binding.spec
        reply = _with_id(reply, uuid.uuid4().hex)
        kwargs = spec.call_arguments(values, media_objects(spec, {}))
        image_format = spec.result_image_format or self._app.config.result_image_format
        value, stream = await call_now(spec, kwargs, image_format)
        return await answer(reply, value, stream)

    async def _queued(self, request: Request, reply: Reply, values: dict[str, Any]) -> Response:
        app = self._app
        job, _ = await app.enqueue(request, reply.binding.spec, values, {})
        reply = _with_id(reply, job.id)
        try:
            if streams(reply):
                response: Response = EventStream(self._job_records(request, reply, job))
            else:
                response = await self._job_answer(request, reply, job)
        except Exception as exc:
            response = await openai_error(app, request, exc)
        response.headers[jobs.JOB_HEADER] = job.id
        return response

    async def _job_answer(self, request: Request, reply: Reply, job: Job) -> Response:
        ended = await jobs.wait_for_job(self._app, job, request.receive)
        if ended is None:  # the client went away: nobody reads this
            return Response(status_code=499)
        _check_finished(ended)
        return respond(reply, await jobs.job_value(self._app, ended, request))

    async def _job_records(
        self, request: Request, reply: Reply, job: Job
    ) -> AsyncGenerator[bytes, None]:
        """The job's durable stream, re-encoded as OpenAI chunks."""
        encoder, ended, seen = reply.encoder(), False, False
        assert self._app.stream_hub is not None
        sent = time.monotonic()
        try:
            yield encoder.start()
            async for current, output in jobs.follow(self._app, self._app.stream_hub, job.id):
                if output:
                    seen, sent = True, time.monotonic()
                    yield encoder.encode_all(output)
                elif time.monotonic() - sent > KEEPALIVE_S:  # queued or thinking: keep it open
                    sent = time.monotonic()
                    yield b": keep-alive\n\n"
                if not current.is_terminal:
                    continue
                ended = True
                if current.status is not JobStatus.FINISHED:
                    yield encoder.error(_ended_badly(current))
                    return
                if not seen:  # the function returned its answer instead of yielding it
                    value = await jobs.job_value(self._app, current, request)
                    for record in value_records(encoder, value):
                        yield record
                yield encoder.close()
        finally:
            if not ended:
                await jobs.cancel_abandoned(self._app, job.id)


def _with_id(reply: Reply, ident: str) -> Reply:
    prefix = _PREFIXES.get(reply.binding.kind.name, "")
    return Reply(reply.binding, reply.call, prefix + ident, reply.model, reply.created)


def _ended_badly(job: Job) -> str:
    if job.status is JobStatus.FAILED:
        return job.error or "the job failed"
    return f"JobEnded: the job ended as {job.status}"


def _check_finished(job: Job) -> None:
    if job.status is not JobStatus.FINISHED:
        raise JobEndedBadly(_ended_badly(job))
