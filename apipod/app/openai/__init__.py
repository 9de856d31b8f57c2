"""OpenAI-compatible endpoints (see :mod:`apipod.app.openai.routes`)."""

from apipod.app.openai.routes import OpenAIRoutes

__all__ = ["OpenAIRoutes"]
