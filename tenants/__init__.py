"""The network, its tenants (facilities and partners), users, memberships and tenant isolation."""
