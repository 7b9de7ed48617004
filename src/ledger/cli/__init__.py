"""The `ledger` command line: entrypoints only."""
