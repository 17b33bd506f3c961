"""Tier: integration tests (see tests/README.md)."""
