"""rdsweep: rate-distortion sweeps of VAE families."""
__version__ = "0.7.0"
