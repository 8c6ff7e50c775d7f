"""Training pieces: data (dataloader, augment), losses, metrics, config and optimizer/scheduler/checkpoint utils."""
