"""Plain, frozen domain types shared by the engine, renderers and adapters. No I/O here."""
