"""The generic training engine (build → plan → step, runtime, loop): knows losses, update rules
and checkpoints, never architectures."""
