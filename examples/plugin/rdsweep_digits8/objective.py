"""huber-target-rate: land at rate σ with a pull that is smooth near σ (like (σ − R)²) and bounded far from it
(like |σ − R|), so a model far below σ is not yanked by a gradient that grows with the distance."""
import torch.nn.functional as F


def huber_target_rate(rate, distortion, cell, epoch, latents):
    """The contract's loss: rate and distortion per example (B,), nats; the batch's objective, a scalar."""
    r = rate.mean(0).sum()
    return distortion.mean() + F.huber_loss(r, r.new_tensor(cell.target_rate), delta=1.0)
