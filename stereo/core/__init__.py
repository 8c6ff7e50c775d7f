"""The stereo model, one concern per file: features, cost volume, hourglass, correlation lookup, GRU update,
upsampling/padding, and the model that ties them together (`stereo.core.foundation_stereo.FoundationStereo`)."""
