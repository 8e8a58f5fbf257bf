"""Helpers the integration tests share."""
