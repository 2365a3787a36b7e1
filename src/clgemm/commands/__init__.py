"""Subcommands of the `clgemm` CLI, one module per owner."""
