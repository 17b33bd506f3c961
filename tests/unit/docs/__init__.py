"""The documentation: links, the configuration table."""
