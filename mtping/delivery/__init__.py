"""Delivery: POST an event to a sink over pooled HTTP, retrying with backoff until a deadline.

The only package that sends events; it knows nothing of PingSources, schedules or Kubernetes.
Import from here: `Sender`, `Target`, `Outcome`, `DeliveryPolicy` and the error hierarchy.
"""

from mtping.delivery.errors import (
    DeliveryError,
    InvalidRequest,
    SinkStatusError,
    SinkTimeout,
    SinkTLSError,
    SinkUnreachable,
)
from mtping.delivery.policy import DeliveryPolicy
from mtping.delivery.sending import Outcome, Sender, Target

__all__ = [
    "DeliveryError",
    "DeliveryPolicy",
    "InvalidRequest",
    "Outcome",
    "Sender",
    "SinkStatusError",
    "SinkTLSError",
    "SinkTimeout",
    "SinkUnreachable",
    "Target",
]
