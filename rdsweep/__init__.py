"""rdsweep: rate-distortion sweeps of VAE families."""
__version__ = "0.6.0"
