"""Composition roots: `classify serve` (core + gRPC + gateway in one process) and `classify gateway` (HTTP only)."""
