"""Teacher training and Relative Difficulty Distillation."""
