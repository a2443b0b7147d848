"""The api package's seams into its dependencies' internals: one module per dependency."""
