"""Code every CivicPulse service shares: event schemas, topics, settings and plumbing."""
