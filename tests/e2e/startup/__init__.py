"""Start-up failures: every bad setting or environment is one line, never a traceback."""
