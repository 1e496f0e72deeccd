"""The HTTP API (Litestar), its authentication and the ``carehub`` command line."""
