"""One controller per resource; each is thin and calls one service function."""
