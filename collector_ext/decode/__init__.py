"""From OTLP request bytes to validated, normalized span rows in Arrow (runs in the decode processes)."""
