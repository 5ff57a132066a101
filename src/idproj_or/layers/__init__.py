"""The layer classes users build: each turns a model into a spec (:mod:`idproj_or.solvers`) and
pairs a solve handle with the identity rule (:class:`idproj_or.rules.identity.OptLayer`)."""
