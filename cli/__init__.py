"""The ``sourcecheck`` command: accounts and keys, starting the system's processes, checking
sources (directly, or through the API) and the metadata database's schema."""
