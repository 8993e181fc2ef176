from vaelab.callbacks.figures import CentreDecode, FigureCallback, LatentGrid, LatentScatter

__all__ = ["FigureCallback", "LatentScatter", "LatentGrid", "CentreDecode"]
