"""Models: ``AutoEncoder`` and the few composite models, all returning :class:`ModelOutput`."""

from isthmus.models.autoencoder import AutoEncoder, ObjectiveConfig
from isthmus.models.classifier import Classifier, FrozenEncoderHead
from isthmus.models.matryoshka import MatryoshkaAutoEncoder
from isthmus.models.objectives import corrupt, reconstruction_loss
from isthmus.models.output import ModelOutput
from isthmus.models.prototype import PrototypeClassifier

__all__ = [
    "AutoEncoder", "Classifier", "FrozenEncoderHead", "MatryoshkaAutoEncoder", "ModelOutput", "ObjectiveConfig", "PrototypeClassifier",
    "corrupt", "reconstruction_loss",
]
