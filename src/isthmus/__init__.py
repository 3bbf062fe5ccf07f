"""isthmus: composable autoencoders — encoder → bottleneck → decoder, trained, measured, put to work.

Importing ``isthmus`` itself is light (no torch), so ``isthmus --help`` and listings start fast. The
deliberate runtime defaults (1 intra-op thread, denormals flushed; see isthmus/_runtime.py) are
applied when the first torch-using layer, :mod:`isthmus.nn`, is imported, and by every ``Trainer.fit``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
