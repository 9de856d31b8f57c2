"""Which endpoints are OpenAI-compatible: a parameter typed with one of the request models
of :mod:`apipod.common.schemas` (or a subclass) makes the endpoint one of that kind."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from pydantic import BaseModel

from apipod.common.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageGenerationRequest,
    SpeechRequest,
    TranscriptionRequest,
)
from apipod.endpoint import EndpointSpec


@dataclass(frozen=True)
class Kind:
    """One OpenAI operation: its route, its request model, whether it can stream."""

    name: str
    path: str
    request: type[BaseModel]
    streams: bool = False
    multipart: bool = False


CHAT = Kind("chat", "/v1/chat/completions", ChatCompletionRequest, streams=True)
COMPLETION = Kind("completion", "/v1/completions", CompletionRequest, streams=True)
EMBEDDING = Kind("embedding", "/v1/embeddings", EmbeddingRequest)
SPEECH = Kind("speech", "/v1/audio/speech", SpeechRequest)
TRANSCRIPTION = Kind(
    "transcription", "/v1/audio/transcriptions", TranscriptionRequest, multipart=True
)
IMAGE = Kind("image", "/v1/images/generations", ImageGenerationRequest)
KINDS = (CHAT, COMPLETION, EMBEDDING, SPEECH, TRANSCRIPTION, IMAGE)


@dataclass(frozen=True)
class Binding:
    """An OpenAI endpoint: its spec, its kind, the parameter that takes the request and
    the request model it is typed with (the kind's model or a subclass)."""

    spec: EndpointSpec
    kind: Kind
    param: str
    model: type[BaseModel]

    @property
    def model_id(self) -> str:
        """The name ``GET /v1/models`` lists it under (the route without its slash)."""
        return self.spec.path.strip("/")


def binding_of(spec: EndpointSpec) -> Binding | None:
    """The endpoint's OpenAI binding, or None for an ordinary endpoint."""
    for param in spec.params:
        model = param.inner
        if param.is_list or not inspect.isclass(model):
            continue
        for kind in KINDS:
            if issubclass(model, kind.request):
                return Binding(spec, kind, param.name, model)
    return None
