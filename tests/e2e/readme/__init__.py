"""README and docs/ commands, run as written against real servers."""
