"""An OpenAI-compatible chat service with a stand-in token generator that runs anywhere.

Run:  apipod start examples/chat/service.py
Try:  python -c "from openai import OpenAI
c = OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='unused')
for chunk in c.chat.completions.create(model='chat', stream=True,
        messages=[{'role': 'user', 'content': 'Tell me a story'}]):
    print(chunk.choices[0].delta.content or '' if chunk.choices else '', end='', flush=True)"

Every call is a job (queue mode): its id comes back in ``X-APIPod-Job-Id``, it shows in
``/jobs`` and the dashboard, ``/stream/<id>`` reattaches, and a client that disconnects
cancels it. To serve a real model, load it in ``on_worker_start`` and make ``generate``
yield its tokens (see the README, "OpenAI-compatible endpoints").
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from apipod import APIPod
from apipod.common.schemas import ChatCompletionRequest, EmbeddingRequest

app = APIPod(compute="serverless", provider="localhost", title="chat")
WORDS = [
    "once",
    "upon",
    "a",
    "time",
    "a",
    "small",
    "model",
    "answered",
    "every",
    "question",
    "with",
    "a",
    "story",
]


@app.on_worker_start
def load() -> None:
    """Load the model here, once per worker (never at import time). For example:
    ``llm = llama_cpp.Llama(model_path="model.gguf", n_gpu_layers=-1)``."""


def generate(prompt: str, max_tokens: int) -> Iterator[str]:
    """The stand-in model: a token every 20 ms, like a small LLM on a GPU."""
    for i in range(max_tokens):
        time.sleep(0.02)
        yield (" " if i else "") + WORDS[(len(prompt) + i) % len(WORDS)]


@app.endpoint("/chat")
def chat(request: ChatCompletionRequest):
    """Chat completions; ``stream: true`` streams the tokens as they are made."""
    prompt = str(request.messages[-1].content or "")
    tokens = generate(prompt, min(request.max_tokens or 32, 256))
    if request.stream:
        return tokens  # each string becomes a ChatCompletionChunk
    return "".join(tokens)  # becomes a ChatCompletionResponse


@app.endpoint("/embeddings", batch_size=16, batch_wait_ms=10)
def embeddings(requests: list[EmbeddingRequest]) -> list:
    """Embeddings, many requests per call: one list of vectors per request."""
    out = []
    for request in requests:
        texts = [request.input] if isinstance(request.input, str) else request.input
        out.append([[len(t) / 100, t.count(" ") / 10, 1.0] for t in texts])
    return out
