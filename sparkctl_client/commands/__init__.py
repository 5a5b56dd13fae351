"""One module per noun. Each exposes `register(subparsers)`; each verb handler takes
(client, args) and returns (message, table text): the CLI prints one or the other."""
