"""Live demand for KEDA: the external scaler gRPC service and the metrics-api JSON."""
