"""sparkctl-client: the command-line client of sparkd's local API (one module per noun)."""
