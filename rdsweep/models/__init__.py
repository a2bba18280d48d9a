"""Encoders e(z|x), decoders d(x|z), marginals m(z), and the VAE that joins them."""
