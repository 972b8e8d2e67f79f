"""ATD-DL: deep-learning detection of faint point sources in astronomical images."""

__version__ = "0.1.0"
