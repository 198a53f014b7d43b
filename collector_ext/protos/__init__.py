"""Our own .proto files and their generated, committed gRPC stubs (`make protos`)."""
