"""What both gRPC servers share: the error mapping, the authorization table, the limits."""
