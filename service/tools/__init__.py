"""Tools beside serving (benchmark, quantization, export, code generation, weights files); nothing that serves imports them."""
