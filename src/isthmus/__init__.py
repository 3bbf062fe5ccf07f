"""isthmus: composable autoencoders — encoder → bottleneck → decoder, trained, measured, put to work.

Importing isthmus changes no process state and is light (no torch), so ``isthmus --help`` and
listings start fast: the one-thread and denormal defaults apply only inside its entry points (CLI,
``Trainer.fit``, ``train_sae``, recipes); see :mod:`isthmus._runtime`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
