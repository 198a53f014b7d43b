"""The OTLP transports: transport-free ingest, gRPC, HTTP (protobuf and JSON), the receiver's own telemetry."""
