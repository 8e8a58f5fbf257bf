"""The CivicPulse services: intake, complaints, feedback and metrics."""
