"""Gradient rules: each one module over a :class:`~idproj_or.handle.SolveHandle`.

Identity with projection (:mod:`.identity`) is what every layer applies (:class:`.identity.OptLayer`
owns its handle; it is not a rule) and, as :class:`.identity.ProjectedIdentity`, a rule over any
layer; :mod:`.spo` (SPO+), :mod:`.blackbox` (DBB), :mod:`.perturbed` (perturbed optimiser,
Fenchel-Young) and :mod:`.imle` (I-MLE; :mod:`.aimle` its adaptive variant) take any layer. :mod:`.base` holds what they share (cost
preparation, each module's own ``last_info``, the solve, :mod:`.cache` for ``solve_ratio``);
:mod:`.generators` makes their random draws opaque operators. :mod:`.cave` (CaVE) takes any layer
whose model is linear and never solves.
"""
