from vaelab.data.datamodule import IDXDataModule

__all__ = ["IDXDataModule"]
