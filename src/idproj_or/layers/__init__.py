"""The layer classes users build: each turns a model into a spec (:mod:`idproj_or.solvers`); the
base, :class:`idproj_or.rules.identity.OptLayer`, owns the solve handle and applies identity with
projection itself (a layer is not a rule)."""
