"""The council simulator: realistic customer-service traffic for a district council."""
