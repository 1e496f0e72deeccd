"""Patients: the tenant-local patient record."""
