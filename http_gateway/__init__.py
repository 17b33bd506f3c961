"""The HTTP transport: a FastAPI gateway whose routes, JSON and schemas come from the proto."""
