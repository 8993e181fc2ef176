from vaelab.data.mnist import MNISTDataModule

__all__ = ["MNISTDataModule"]
