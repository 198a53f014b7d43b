"""How much of a span the decoder keeps: bounds set by the receiver's configuration, never by clients.

Past a size limit a value is truncated with a marker (the span is kept: a long prompt or command line is
not a reason to lose a call's tokens); past the time window the span is rejected (its start would create a
`date=` partition far from now: one client could otherwise make thousands of directories and files).

- Attribute values (span, link and resource attributes), span names and status messages: at most
  `max_attribute_value_chars`, then TRUNCATION_MARKER with the original length.
- Identifiers and names in typed columns (response_id, conversation_id, agent and tool names, models,
  provider, operation, service and Kubernetes names) and attribute keys: at most `max_id_chars`, then the
  marker with the original length and a SHA-256 prefix, so that two long ids that share a prefix stay two
  ids (the analyzer de-duplicates calls by response id).
- At most `max_attributes` attributes per span, link and resource (the OpenTelemetry SDK's default
  attribute count limit, 128) and `max_links` links per span (the SDK's default link limit, 128); the rest
  are dropped and counted in the `agentmeter.dropped_attributes_count` / `agentmeter.dropped_links_count`
  attribute.
- A span whose start is more than `span_max_age_ns` before its receipt or more than `span_max_future_ns`
  after it is rejected (reason `time_window`); None switches a side off. The library default has no window
  (decoding stays a pure function of the request for any received time); the receiver passes its
  configuration (`--span-max-age-hours`, `--span-max-future-minutes`).

Decoding is deterministic for given limits: the WAL replay must decode with the limits the request was
acknowledged under (`from_config` of the same configuration).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collector_ext.config import ReceiverConfig

TRUNCATION_MARKER = "...[truncated by agentmeter; original length {} chars]"
ID_TRUNCATION_MARKER = "...[truncated by agentmeter; original length {} chars; sha256 {}]"
DROPPED_ATTRIBUTES_KEY = "agentmeter.dropped_attributes_count"
DROPPED_LINKS_KEY = "agentmeter.dropped_links_count"

NS_PER_HOUR = 3600 * 1_000_000_000
NS_PER_MINUTE = 60 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_attribute_value_chars: int = 64 * 1024
    max_id_chars: int = 256
    max_attributes: int = 128
    max_links: int = 128
    span_max_age_ns: int | None = None
    span_max_future_ns: int | None = None

    @classmethod
    def from_config(cls, config: ReceiverConfig) -> DecodeLimits:
        return cls(
            max_attribute_value_chars=config.max_attribute_value_chars,
            max_id_chars=config.max_id_chars,
            max_attributes=config.max_attributes,
            max_links=config.max_links,
            span_max_age_ns=int(config.span_max_age_hours * NS_PER_HOUR) or None,
            span_max_future_ns=int(config.span_max_future_minutes * NS_PER_MINUTE) or None,
        )

    def truncate_value(self, text: str) -> str:
        """An attribute value, span name or status message, capped (call only when it is too long)."""
        return text[: self.max_attribute_value_chars] + TRUNCATION_MARKER.format(len(text))

    def shorten_id(self, text: str) -> str:
        """An identifier or name, capped so that distinct long values stay distinct (call only when too long)."""
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return text[: self.max_id_chars] + ID_TRUNCATION_MARKER.format(len(text), digest)


DEFAULT_LIMITS = DecodeLimits()
