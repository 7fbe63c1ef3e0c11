"""``phasediff reproduce``: the study of one dataset as stages cached on disk, and an offline HTML report.

    stages    what each stage asks, its settings and checkpoints, and the key of its inputs
    cache     finished stage folders (DIR/stages/NAME-KEY12/), written whole or not at all
    steps     one module per stage: run it (library calls), present it (figures, tables, the paper's numbers)
    paper     the paper's numbers, each with its source
    cost      the expected cost of the stages that will run
    report    DIR/index.html through a Jinja2 template
    pipeline  `reproduce`: all of it, for one `DatasetPlan`
"""

from phasediff.reproduce.pipeline import dataset_plan, reproduce
from phasediff.reproduce.stages import DATASETS, DatasetPlan, Options

__all__ = ["DATASETS", "DatasetPlan", "Options", "dataset_plan", "reproduce"]
