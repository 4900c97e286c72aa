"""mtping: fires Kubernetes PingSources as CloudEvents from one asyncio process per cluster."""

__version__ = "0.1.0"
