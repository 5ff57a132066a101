"""Gradient rules: each one module over a :class:`~idproj_or.handle.SolveHandle`, with its own
opaque torch operator. Identity with projection (:mod:`.identity`) is the rule of every layer."""
