"""vidsgg (placeholder until its issue lands)."""
