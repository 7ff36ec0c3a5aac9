"""Optimisers, update rules (how G and D take turns) and learning-rate schedules."""
