"""Fakes for the host facilities (`sparkd.host.protocols`): in-memory OS state that prints as text."""
