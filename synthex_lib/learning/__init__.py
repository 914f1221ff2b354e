"""Learning: the multi-task networks, losses, training, evaluation, metrics and statistics."""
