"""sepkit: train, run and evaluate deep audio source separation networks."""

__version__ = "0.1.0"
