"""isthmus: composable autoencoders — encoder → bottleneck → decoder, trained, measured, put to work."""

__version__ = "0.1.0"

from isthmus._runtime import configure as _configure

# Deliberate runtime defaults (1 intra-op thread, denormals flushed); see isthmus/_runtime.py.
_configure()

__all__ = ["__version__"]
