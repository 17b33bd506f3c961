"""Code-generation helpers used by `buf generate` (not imported at run time)."""
