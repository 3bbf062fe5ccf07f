"""The 44 seed papers: number, slug, title and arXiv id of each.

Slugs and titles follow ``shared/recipes.md`` exactly (checks and docs refer to them). arXiv ids
come from the paper notes (``shared/papers/seeds-*.md``); where those lacked one, the id was
looked up from the paper's title and recorded here with its source in a comment.

Whether a recipe is *implemented* is not stored here: :func:`isthmus.recipes.registry.list_recipes`
computes it from the registry, so this table never goes stale.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Seed", "CatalogEntry", "SEEDS", "SLUGS", "seed", "arxiv_url", "slug_to_module"]


@dataclass(frozen=True)
class Seed:
    """One seed paper as listed in the seed document."""

    number: int
    slug: str
    title: str
    arxiv: str  # "" when unknown


@dataclass(frozen=True)
class CatalogEntry:
    """A seed paper plus whether a recipe for it is registered ("implemented" / "planned")."""

    number: int
    slug: str
    title: str
    arxiv: str
    status: str

    def to_dict(self) -> dict[str, object]:
        return {
            "number": self.number,
            "slug": self.slug,
            "status": self.status,
            "title": self.title,
            "arxiv": self.arxiv,
        }


_S = Seed
SEEDS: tuple[Seed, ...] = (
    _S(
        1,
        "sae-circuits",
        "Sparse Autoencoders Enable Scalable and Reliable Circuit Identification in Language Models",
        "2405.12522",
    ),
    _S(2, "old-photo-restoration", "Old Photo Restoration via Deep Latent Space Translation", "2009.07047"),
    _S(
        3,
        "stacked-ae-clustering",
        "Remote sensing framework for geological mapping via stacked autoencoders and clustering",
        "2404.02180",
    ),
    _S(
        4,
        "bottlefit",
        "BottleFit: Learning Compressed Representations in Deep Neural Networks for Effective and Efficient Split Computing",
        "2201.02693",
    ),
    _S(
        5,
        "prototype-net",
        "Deep Learning for Case-Based Reasoning through Prototypes: A Neural Network that Explains Its Predictions",
        "1710.04806",
    ),
    _S(
        6,
        "hpc-autoencoder-anomaly",
        "Anomaly Detection using Autoencoders in High Performance Computing Systems",
        "1811.05269",
    ),
    _S(
        7,
        "ard-vae",
        "ARD-VAE: A Statistical Formulation to Find the Relevant Latent Dimensions of Variational Autoencoders",
        "2501.10901",
    ),
    _S(
        8,
        "mm-gpvae",
        "Multi-modal Gaussian Process Variational Autoencoders for Neural and Behavioral Data",
        "2310.03111",
    ),
    _S(9, "context-autoencoder", "Context Autoencoder for Self-Supervised Representation Learning", "2202.03026"),
    _S(10, "gradient-noise", "Adding Gradient Noise Improves Learning for Very Deep Networks", "1511.06807"),
    _S(11, "starbucks", "Starbucks: Improved Training for 2D Matryoshka Embeddings", "2410.13230"),
    _S(
        12,
        "converting-autoencoder",
        "A Converting Autoencoder Toward Low-latency and Energy-efficient DNN Inference at the Edge",
        "2403.07036",
    ),
    # arXiv version titled "Stacking VAE with Graph Neural Networks for Effective and Interpretable
    # Time Series Anomaly Detection" (18 May 2021); id from a published reference list.
    _S(
        13,
        "stackvae-g",
        "StackVAE-G: An efficient and interpretable model for time series anomaly detection",
        "2105.08397",
    ),
    _S(14, "scgc", "SCGC : Self-Supervised Contrastive Graph Clustering", "2204.12656"),
    _S(
        15,
        "ddmi",
        "DDMI: Domain-Agnostic Latent Diffusion Models for Synthesizing High-Quality Implicit Neural Representations",
        "2401.12517",
    ),
    # 16–30: ids looked up by title (arXiv abstract pages / mirrors), not in the paper notes.
    _S(16, "low-light-cue", "Empowering Low-Light Image Enhancer through Customized Learnable Priors", "2309.01958"),
    _S(
        17,
        "model-collapse",
        "Is Model Collapse Inevitable? Breaking the Curse of Recursion by Accumulating Real and Synthetic Data",
        "2404.01413",
    ),
    _S(18, "auto-interp", "Automatically Interpreting Millions of Features in Large Language Models", "2410.13928"),
    _S(19, "starflow", "STARFlow: Scaling Latent Normalizing Flows for High-resolution Image Synthesis", "2506.06276"),
    _S(
        20,
        "ganprintr",
        "GANprintR: Improved Fakes and Evaluation of the State of the Art in Face Manipulation Detection",
        "1911.05351",
    ),
    _S(21, "natra", "Robust Training Using Natural Transformation", "2105.04070"),
    _S(22, "lrcn", "Long-term Recurrent Convolutional Networks for Visual Recognition and Description", "1411.4389"),
    _S(
        23,
        "blackbox-surrogate",
        "Interpreting Black-box Machine Learning Models for High Dimensional Datasets",
        "2208.13405",
    ),
    _S(24, "key-value-bottleneck", "Discrete Key-Value Bottleneck", "2207.11240"),
    _S(25, "vision-sae", "Probing the Representational Power of Sparse Autoencoders in Vision Models", "2508.11277"),
    _S(26, "qlae", "Disentanglement via Latent Quantization", "2305.18378"),
    _S(27, "rae-diffusion", "Diffusion Transformers with Representation Autoencoders", "2510.11690"),
    _S(28, "maestro", "Maestro: Uncovering Low-Rank Structures via Trainable Decomposition", "2308.14929"),
    _S(
        29,
        "top-afa-sae",
        "Evaluating and Designing Sparse Autoencoders by Approximating Quasi-Orthogonality",
        "2503.24277",
    ),
    _S(30, "crate-mae", "Masked Completion via Structured Diffusion with White-Box Transformers", "2404.02446"),
    # The notes say "ID not checked"; 2003.13600 is the id the authors' lab lists for this title.
    _S(31, "ariel", "AriEL: volume coding for sentence generation", "2003.13600"),
    _S(
        32,
        "feature-data-selection",
        "Task-Specific Data Selection for Instruction Tuning via Monosemantic Neuronal Activations",
        "2503.15573",
    ),
    _S(
        33,
        "dicode",
        "DiCoDe: Diffusion-Compressed Deep Tokens for Autoregressive Video Generation with Language Models",
        "2412.04446",
    ),
    _S(34, "axial-attention", "Axial Attention in Multidimensional Transformers", "1912.12180"),
    _S(
        35,
        "vae-latent-quantization-defense",
        "Variational Inference with Latent Space Quantization for Adversarial Resilience",
        "1903.09940",
    ),
    _S(36, "nerv-plus-plus", "NERV++: An Enhanced Implicit Neural Video Representation", "2402.18305"),
    _S(
        37,
        "g-simclr",
        "G-SimCLR : Self-Supervised Contrastive Learning with Guided Projection via Pseudo Labelling",
        "2009.12007",
    ),
    _S(
        38,
        "codebook-features",
        "Codebook Features: Sparse and Discrete Interpretability for Neural Networks",
        "2310.17230",
    ),
    _S(
        39,
        "coarse-to-fine-tokens",
        "Improving Autoregressive Image Generation through Coarse-to-Fine Token Prediction",
        "2503.16194",
    ),
    _S(40, "ladi-vton-emasc", "LaDI-VTON: Latent Diffusion Textual-Inversion Enhanced Virtual Try-On", "2305.13501"),
    _S(41, "deep-architect", "DeepArchitect: Automatically Designing and Training Deep Architectures", "1704.08792"),
    _S(42, "attention-output-sae", "Interpreting Attention Layer Outputs with Sparse Autoencoders", "2406.17759"),
    _S(
        43,
        "first-routers",
        "FiRST: Finetuning Router-Selective Transformers for Input-Adaptive Latency Reduction",
        "2410.12513",
    ),
    _S(44, "point-mae", "Masked Autoencoders for Point Cloud Self-supervised Learning", "2203.06604"),
)
del _S

SLUGS: tuple[str, ...] = tuple(s.slug for s in SEEDS)
_BY_SLUG: dict[str, Seed] = {s.slug: s for s in SEEDS}


def seed(slug: str) -> Seed:
    """The catalog row for ``slug`` (KeyError if it is not one of the 44)."""
    return _BY_SLUG[slug]


def arxiv_url(arxiv: str) -> str:
    """``https://arxiv.org/abs/<id>``, or "" when the id is unknown."""
    return f"https://arxiv.org/abs/{arxiv}" if arxiv else ""


def slug_to_module(slug: str) -> str:
    """Module name (inside ``isthmus.recipes``) that implements ``slug``: dashes → underscores."""
    return slug.replace("-", "_")
