"""The gateway service: HTTP API, jobs, callbacks, webhook relay, config, store, CLI."""
