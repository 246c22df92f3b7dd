"""Provider adapters: one folder per provider, plus the normalized models they all speak."""
