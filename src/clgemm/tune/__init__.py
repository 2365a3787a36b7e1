"""The auto-scheduler: measurement, tuning database, strategies' driver, distillation."""
