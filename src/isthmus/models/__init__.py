"""Models: ``AutoEncoder`` and the few composite models, all returning :class:`ModelOutput`."""

from isthmus.models.autoencoder import AutoEncoder, ObjectiveConfig
from isthmus.models.classifier import Classifier, FrozenEncoderHead
from isthmus.models.matryoshka import MatryoshkaAutoEncoder
from isthmus.models.multimodal_gpvae import MultimodalGPVAE, MultimodalGPVAEConfig
from isthmus.models.objectives import corrupt, reconstruction_loss
from isthmus.models.output import ModelOutput
from isthmus.models.prototype import PrototypeClassifier
from isthmus.models.stackvae import StackVAEG, StackVAEGConfig
from isthmus.models.token_transformer import TokenTransformer

__all__ = [
    "AutoEncoder",
    "Classifier",
    "FrozenEncoderHead",
    "MatryoshkaAutoEncoder",
    "ModelOutput",
    "MultimodalGPVAE",
    "MultimodalGPVAEConfig",
    "ObjectiveConfig",
    "PrototypeClassifier",
    "StackVAEG",
    "StackVAEGConfig",
    "TokenTransformer",
    "corrupt",
    "reconstruction_loss",
]
