"""Background work: the outbox relay, the job broker (dramatiq) and the tenant-aware, idempotent event handlers."""
