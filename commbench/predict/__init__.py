"""Predicting: hardware, serving recipes, measured compute, the serving model, explain and accuracy."""
