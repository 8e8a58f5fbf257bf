"""CivicPulse developer tooling: the `civicpulse` command and the local infrastructure launcher."""
