"""The pure ViewDefinition runner: validate a view, then flatten resources into rows.

Public API: :func:`compile_view` (validates and returns a :class:`CompiledView`),
:class:`ViewError` (an invalid view, with the location of the fault).
"""

from hygeia.analytics.views.model import CompiledView, ViewError, compile_view

__all__ = ["CompiledView", "ViewError", "compile_view"]
