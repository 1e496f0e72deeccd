"""Community services for care coordinators: one search across the resource directories a tenant uses."""
