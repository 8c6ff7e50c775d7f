"""Command-line tools of vidsgg that are not the training / evaluation entry points (e.g. compute_priors)."""
