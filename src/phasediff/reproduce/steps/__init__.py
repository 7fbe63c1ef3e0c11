"""One module per stage of ``phasediff reproduce``, each with ``plan(dataset, options, folder) -> Stage``,
``run(stage, ctx, work) -> dict`` (the result, JSON-able; its files go into ``work``) and
``present(stage, record, ctx) -> dict`` (figures, tables, notes and the paper's numbers for the report).
``run`` calls the library; ``present`` only reads the stored result, so the report can change without
recomputing a stage."""
