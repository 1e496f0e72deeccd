"""Notifications: alert rule settings per tenant, people's channel preferences and quiet hours, and delivery."""
