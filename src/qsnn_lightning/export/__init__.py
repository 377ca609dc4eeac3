"""Export to microcontrollers: the integer model (``integer_model``), the Python integer reference
(``reference``), C generation (``codegen``) and the export folder (``writer``); docs/export.md."""

from ..errors import ExportError
from .integer_model import IntegerModel, fold, quantize_input
from .reference import predict, run
from .writer import export_checkpoint

__all__ = ["ExportError", "IntegerModel", "export_checkpoint", "fold", "predict", "quantize_input", "run"]
