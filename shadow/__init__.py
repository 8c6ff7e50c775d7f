"""shadow (placeholder until its issue lands)."""
