"""The report's side of each stage: ``present(stage, record, ctx) -> dict`` (figures, tables, notes, the paper's
numbers) and the stage's title, question and command line. Kept apart from ``steps`` so that a change to the
page does not change a stage's key (the key hashes the step module's source).
"""
