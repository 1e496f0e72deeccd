"""Secure messaging: threads about a patient, immutable messages, receipts and attachments."""
