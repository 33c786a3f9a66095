"""polycolor_core.training: Training: the config dataclass, profiles, the loop, the composite loss and its LPIPS weights, precision choice and the training data stream."""
