"""shadow: controllable shadow generation (Tasar et al., CVPR 2025) — a light-conditioned single-step rectified
flow (pixel-space UNet or SDXL backbone), a procedural area-light renderer for synthetic data, the benchmark's
three tracks and metrics. See shadow/README.md."""
