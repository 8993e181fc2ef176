from vaelab.models.base import ELBOModule
from vaelab.models.conv_vae import CondConvVAE, ConvVAE
from vaelab.models.vae import VAE

__all__ = ["ELBOModule", "VAE", "ConvVAE", "CondConvVAE"]
