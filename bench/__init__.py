"""Measurement scripts behind the project's performance decisions (not part of the service)."""
