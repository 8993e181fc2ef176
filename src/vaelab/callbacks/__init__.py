from vaelab.callbacks.figures import CentreDecode, FigureCallback, LatentGrid, LatentScatter
from vaelab.callbacks.interrupt import InterruptCheckpoint
from vaelab.callbacks.timing import FitTimer

__all__ = ["FigureCallback", "LatentScatter", "LatentGrid", "CentreDecode", "InterruptCheckpoint", "FitTimer"]
