"""The command-line tools as processes."""
