"""What plugin vendors import: hook specifications and payload types. Imports nothing from the host."""
