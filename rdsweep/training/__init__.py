"""Training: one cell's model, in pure PyTorch (no Ray). The trainer's loop, the objectives, the stopping rule,
checkpoints, the final evaluation, what a latent is worth, two-stage inference, devices, and the model
contract a plugin family's model is held to."""
