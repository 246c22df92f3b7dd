"""Outbound client webhooks: rendering, signing, SSRF guard, durable delivery worker."""
