"""teddywatch: watch folders for new images and classify each one with a fast.ai model."""

__version__ = "0.1.0"
