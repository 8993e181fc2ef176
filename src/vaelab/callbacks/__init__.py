from vaelab.callbacks.checkpoint import BestCheckpoint, LastCheckpoint
from vaelab.callbacks.figure_logger import FigureLogger
from vaelab.callbacks.history import EpochHistory
from vaelab.callbacks.interrupt import InterruptCheckpoint
from vaelab.callbacks.learning_rate import LearningRateCurve

__all__ = [
    "BestCheckpoint",
    "EpochHistory",
    "FigureLogger",
    "InterruptCheckpoint",
    "LastCheckpoint",
    "LearningRateCurve",
]
