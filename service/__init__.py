"""Image classification service: inference core, gRPC server and CLI."""
