"""gdgrade: the course's grading tools (not part of what the book teaches; that is ``gdlib``).

Modules, by concern:

``gdgrade.grading``
    The checks a grade cell calls inside the student's kernel (feedback that names the wrong
    value, the guard against replaced primitives, the reference-call watch).
``gdgrade.scan``
    The static scan of submitted notebooks for grading tampering.
``gdgrade.sandbox``
    The kernel sandbox of ``nbgrader autograde``: every submission runs in a process that can
    write nothing outside its own temporary directory and cannot read the instructor's files,
    so that no submission can change the reference, the grader or another student's grade.
``gdgrade.verify`` (and ``gdgrade/answer_worker.py``)
    The out-of-process verification whose score is the grade: the submission's cells run in a
    sandboxed process without gdlib or gdgrade, the tests in the grading process, plain data
    between them.
``gdgrade.nbgrader_plugins``
    The nbgrader plug-ins registered in ``nbgrader_config.py``.
``gdgrade.course``
    The instructor's commands: ``python -m gdgrade release | scan | held``.
"""
