"""The engine: desired state, plans and state machines. Pure where it can be; talks to the
host only through the adapters in `sparkd.host`."""
