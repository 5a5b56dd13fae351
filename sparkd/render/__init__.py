"""Pure renderers: desired state in, file bytes or argv out. No I/O here."""
