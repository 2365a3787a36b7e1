"""clgemm's exceptions: each says what went wrong and what to do about it."""

from __future__ import annotations


class ClgemmError(Exception):
    """Base of every error clgemm raises on purpose."""


class ShapeError(ClgemmError, ValueError):
    """Operand shapes do not fit together (or are not 2-D)."""


class DTypeError(ClgemmError, TypeError):
    """An operand is not float32."""


class NonFiniteError(ClgemmError, ValueError):
    """An input holds NaN or Inf and the caller asked for nonfinite='raise'."""


class NoDeviceError(ClgemmError, RuntimeError):
    """No OpenCL device could be found or the one asked for does not exist."""


class OutOfDeviceMemoryError(ClgemmError, MemoryError):
    """The device cannot hold the operands."""


class CompileError(ClgemmError, RuntimeError):
    """The OpenCL compiler rejected a generated kernel."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class ScheduleError(ClgemmError, ValueError):
    """A schedule is malformed or not valid on the device."""


class ContractError(ClgemmError, ValueError):
    """An accuracy contract (rel_tol) cannot be honoured or was given badly."""


class FaultError(ClgemmError, RuntimeError):
    """ABFT found a fault in the result that recomputation did not clear."""


class EngineError(ClgemmError, RuntimeError):
    """The compiled search engine refused a request."""


class RecordError(ClgemmError, ValueError):
    """A record under records/ is malformed, or records/INDEX.md no longer matches them."""


class UsageError(ClgemmError, ValueError):
    """A command-line argument is malformed or out of range (the CLI exits 2)."""


class ArgumentError(ClgemmError, TypeError):
    """An API argument has a type that makes no sense for it (a string as alpha, "no" as
    trans_a, a list where an array is needed)."""


class OutOfHostMemoryError(ClgemmError, MemoryError):
    """The host cannot hold the arrays a call would allocate or copy."""


class StateError(ClgemmError, RuntimeError):
    """A file clgemm keeps (tuning database, table, cache) cannot be read or written."""
