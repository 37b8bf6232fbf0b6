"""The tracers, one module each; `_role.py` modules are helpers shared by a family."""
