"""The generic training engine: knows losses, update rules and checkpoints, never architectures."""
