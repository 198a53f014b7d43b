"""Held spans until their trace is whole: span refs, the trace buffer, stitching, live state, the pipeline."""
