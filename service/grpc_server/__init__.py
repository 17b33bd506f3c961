"""The gRPC transport: servicers, error mapping, reflection and health."""
