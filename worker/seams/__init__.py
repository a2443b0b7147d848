"""Where the worker package relies on its dependencies' internals: one module per dependency."""
