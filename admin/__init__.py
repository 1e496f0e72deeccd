"""Web console for network administrators and the clinic workspace (server-rendered, Litestar templates)."""
