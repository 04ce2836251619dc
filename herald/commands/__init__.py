"""Sub-commands of the `herald` CLI, one module per group."""
