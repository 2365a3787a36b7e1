"""clgemm: fast, validated, self-tuning float32 GEMM on any OpenCL device."""

from .api import Plan, matmul, plan, settle, to_device
from .info import Info
from .device import Capabilities, DeviceInfo, devices, get_device
from .errors import (
    ArgumentError, ClgemmError, CompileError, ContractError, DTypeError, EngineError,
    FaultError, NoDeviceError, NonFiniteError, OutOfDeviceMemoryError, OutOfHostMemoryError,
    ScheduleError, ShapeError, StateError, UsageError,
)
from .schedule import Schedule, SearchSpace

__version__ = "0.1.0"


def __getattr__(name: str):
    """`clgemm.abft` after a plain `import clgemm` (loaded on first use: the guard's kernels
    and campaigns are not needed by every product)."""
    if name == "abft":
        import importlib

        return importlib.import_module(".abft", __name__)
    raise AttributeError(f"module 'clgemm' has no attribute {name!r}")

__all__ = [
    "ArgumentError", "Capabilities", "ClgemmError", "CompileError", "ContractError", "DTypeError",
    "DeviceInfo", "EngineError", "FaultError", "Info", "NoDeviceError", "NonFiniteError",
    "OutOfDeviceMemoryError", "OutOfHostMemoryError", "Plan", "Schedule", "ScheduleError",
    "SearchSpace", "ShapeError", "StateError", "UsageError",
    "abft", "devices", "get_device", "matmul", "plan", "settle", "to_device", "__version__",
]
