"""Champion/challenger routing (docs/architecture.md): what serves each (asset, target, candle)
(:mod:`.router`: shadows, A/B split, fallback chain), circuit breakers shared by all workers
(:mod:`.breaker`), run-time routing changes (:mod:`.overrides`), the promotion test
(:mod:`.promotion`), online learning and drift (:mod:`.online`) and their scheduler jobs
(:mod:`.jobs`). Rollback is :func:`signalcast.lifecycle.admin.rollback`; the router reads
roles on every prediction, so a rollback serves from the next candle."""
