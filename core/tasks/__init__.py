"""Tasks for a patient: ownership, assignment, the status workflow, comments and work queues."""
