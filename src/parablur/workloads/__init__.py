"""Workloads: pure functions of a decoded image that return the output image and a small record."""
