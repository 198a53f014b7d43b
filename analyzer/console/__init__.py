"""The web console that `analyze serve` serves at `/` (see analyzer/console/app.py and pages.py)."""
