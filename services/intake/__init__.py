"""Intake: validates contact records from council systems and publishes canonical events."""
