"""Alerts: what a staff member must look at (an inbox), raised by the event rules."""
