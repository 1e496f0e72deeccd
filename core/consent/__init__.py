"""Consent-governed sharing across the network: people and their linked records, consents, break-the-glass,
the decision point (Casbin) and the network view of a patient."""
