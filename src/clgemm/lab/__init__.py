"""The breakthrough lab: experiment cards (TOML) and the promotion gate to production."""
