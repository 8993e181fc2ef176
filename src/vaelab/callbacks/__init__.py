from vaelab.callbacks.figure_logger import FigureLogger
from vaelab.callbacks.interrupt import InterruptCheckpoint
from vaelab.callbacks.timing import FitTimer

__all__ = ["FigureLogger", "InterruptCheckpoint", "FitTimer"]
