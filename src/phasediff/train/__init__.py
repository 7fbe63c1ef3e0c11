"""One training loop for every network: denoising objectives for denoisers, cross-entropy for the judge."""

from phasediff.train.loop import TrainSettings, train
from phasediff.train.objectives import ClassificationObjective, DenoisingObjective

__all__ = ["ClassificationObjective", "DenoisingObjective", "TrainSettings", "train"]
