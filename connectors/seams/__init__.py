"""Where the connectors rely on their dependencies' internals: one module per dependency."""
