"""The generic training engine and its orchestration (build → plan → run → trainer): knows losses, update rules
and checkpoints, never architectures."""
