"""Supervision of a whole instance: ``mmshm up`` (start in order, restart, stop in order) and the
operator commands ``mmshm halt|resume|pause``.

Modules: ``roles`` (the role list and orders), ``backoff`` (restart policy), ``supervisor``
(child processes), ``launch`` (parent-death exec wrapper), ``logs`` (children's output as
JSON lines), ``statusline`` / ``sampler`` (the status line from shared memory),
``commands`` (the operator commands table), ``control`` (halt/resume/pause).
Nothing is imported here, so ``python -m mmshm.supervisor.launch`` stays light.
"""
