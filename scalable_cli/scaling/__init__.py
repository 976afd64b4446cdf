"""Scaling: the adaptive controller and the objective planner."""
