"""Fleet tuning: many devices, one tuning database (see driver, lease, tasks, cluster)."""
