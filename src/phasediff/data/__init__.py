"""Datasets: named image sets, synthetic models with exact answers, and user files."""

from phasediff.data.dataset import Dataset
from phasediff.data.registry import load_dataset, load_model

__all__ = ["Dataset", "load_dataset", "load_model"]
