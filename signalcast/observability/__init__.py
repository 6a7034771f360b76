"""Observability: structured logs with context fields, Prometheus metrics read at scrape time,
health checks. Metrics and health import their dependencies only when used."""

from signalcast.observability.logs import (
    configure_logging,
    configure_logging_from_env,
    current_context,
    log_context,
    route_celery_logging,
    set_service_level,
)

__all__ = ["configure_logging", "configure_logging_from_env", "current_context", "log_context",
           "route_celery_logging", "set_service_level"]
