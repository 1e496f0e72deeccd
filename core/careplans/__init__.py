"""Care plans, their goals and activities, templates validated with JSON Schema, and version history."""
