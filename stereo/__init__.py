"""stereo: a FoundationStereo-style stereo-matching training pipeline (cost volume, 3D hourglass, multi-level
ConvGRU refinement, convex upsampling) with its data formats, augmentations, losses, metrics and scripts.

Convention everywhere: positive disparity in pixels, x_right = x_left - d.
"""
