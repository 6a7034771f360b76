"""Observability for operators: Prometheus metrics read at scrape time (:mod:`.metrics`) and the
health checks behind the containers' probes (:mod:`.health`). Structured logs with context
fields live in :mod:`signalcast.core.logs`, since every layer logs."""
