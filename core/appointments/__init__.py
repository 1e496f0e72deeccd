"""Scheduled contacts with a patient."""
