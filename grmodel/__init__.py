"""grmodel: Generative Regression watch-time models, their baselines and their pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grmodel")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
