"""vaelab: variational autoencoders on MNIST with PyTorch Lightning and Hydra."""

import warnings

from omegaconf import OmegaConf

__version__ = "0.1.0"

# pytorch-lightning 2.6 calls a torch pytree API that torch 2.14 deprecates, once per step: noise only.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")

# `${if_null:${resume},<default>}` in conf/hydra: a resumed run writes into its own run folder again.
if not OmegaConf.has_resolver("if_null"):
    OmegaConf.register_new_resolver("if_null", lambda value, default: default if value is None else value)
