"""stereo (placeholder until its issue lands)."""
