"""Logs of real server processes."""
