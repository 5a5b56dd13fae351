"""The gRPC API layer: thin servicers (one module per service), conversions, error mapping."""
