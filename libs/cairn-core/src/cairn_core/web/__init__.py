"""The HTTP side of a service: app factory and server, middleware, errors as answers, SSE, JSON, OpenAPI."""
