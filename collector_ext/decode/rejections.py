"""Why a span was rejected: one typed reason per rejected span, decided where the check is made.

The reason is the `reason` label of `agentmeter_spans_rejected` (low cardinality, stable); the message
says the same for people (partial_success.error_message). Nothing downstream reads reasons from messages.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RejectReason(enum.Enum):
    TRACE_ID = "trace_id"  # not 16 bytes, or all zero
    SPAN_ID = "span_id"  # not 8 bytes, or all zero
    PARENT_SPAN_ID = "parent_span_id"  # present and not 8 bytes
    LINK = "link"  # a link's trace or span id is invalid
    START_TIME = "start_time"  # zero
    END_TIME = "end_time"  # before the start, or past the largest timestamp
    TIME_WINDOW = "time_window"  # start outside --span-max-age-hours / --span-max-future-minutes of receipt
    USAGE = "usage"  # a token count or cost that is not a valid number (negative, fractional, huge, text)
    INVALID_VALUE = "invalid_value"  # any other value the decoder could not take (the span alone is rejected)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    message: str  # names the span (position, ids) and what is wrong with it
