"""Delivery: POST an event to a sink over pooled HTTP, retrying with backoff until a deadline.

The only package that sends events; it knows nothing of PingSources, schedules or Kubernetes.
Import from here: `Sender`, `Target`, `prepare_request` and its `PreparedRequest` (built once per
source), `Outcome`, `DeliveryPolicy` and the error hierarchy.
"""

from mtping.delivery.errors import (
    DeliveryError,
    InvalidRequest,
    SinkStatusError,
    SinkTimeout,
    SinkTLSError,
    SinkUnreachable,
)
from mtping.delivery.policy import HTTP_CLIENTS, DeliveryPolicy
from mtping.delivery.preparing import PreparedRequest, Target, prepare_request
from mtping.delivery.sending import Outcome, Sender

__all__ = [
    "HTTP_CLIENTS",
    "DeliveryError",
    "DeliveryPolicy",
    "InvalidRequest",
    "Outcome",
    "PreparedRequest",
    "Sender",
    "SinkStatusError",
    "SinkTLSError",
    "SinkTimeout",
    "SinkUnreachable",
    "Target",
    "prepare_request",
]
