"""pysprinter on the user's side: the helpers a function file imports
(`requirements`, `data_path`, `output_dir`, the same code runs see inside
the runner) and a client for a pysprinterd daemon. Standard library only.
See docs/python.md."""
from .runtime import (BYTES_MARKER, PICKLE_MARKER, ConversionError, data_path, from_jsonable,
                      output_dir, pickled, requirements, to_jsonable)
from .client import (APIError, AuthError, Client, ConflictError, DagError, ForbiddenError, NotFoundError,
                     RunError)

__all__ = ["requirements", "data_path", "output_dir", "to_jsonable", "from_jsonable",
           "pickled", "ConversionError", "BYTES_MARKER", "PICKLE_MARKER", "Client", "APIError", "AuthError",
           "ForbiddenError", "NotFoundError", "ConflictError", "RunError", "DagError"]
__version__ = "0.1.0"
