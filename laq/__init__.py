"""laq (placeholder until its issue lands)."""
