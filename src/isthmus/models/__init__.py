"""Models: ``AutoEncoder`` and the few composite models, all returning :class:`ModelOutput`."""

from isthmus.models.autoencoder import AutoEncoder, ObjectiveConfig
from isthmus.models.classifier import Classifier
from isthmus.models.objectives import corrupt, reconstruction_loss
from isthmus.models.output import ModelOutput

__all__ = ["AutoEncoder", "Classifier", "ModelOutput", "ObjectiveConfig", "corrupt", "reconstruction_loss"]
