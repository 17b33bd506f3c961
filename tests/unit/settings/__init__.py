"""The settings object: contradictions, messages, the generated configuration table."""
