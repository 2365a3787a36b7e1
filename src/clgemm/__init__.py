"""clgemm: fast, validated, self-tuning float32 GEMM on any OpenCL device."""

from .api import Info, matmul, to_device
from .device import Capabilities, DeviceInfo, devices, get_device
from .errors import (
    ClgemmError, CompileError, ContractError, DTypeError, EngineError, FaultError,
    NoDeviceError, NonFiniteError, OutOfDeviceMemoryError, ScheduleError, ShapeError,
)
from .schedule import Schedule, SearchSpace

__version__ = "0.1.0"

__all__ = [
    "Capabilities", "ClgemmError", "CompileError", "ContractError", "DTypeError",
    "DeviceInfo", "EngineError", "FaultError", "Info", "NoDeviceError", "NonFiniteError",
    "OutOfDeviceMemoryError", "Schedule", "ScheduleError", "SearchSpace", "ShapeError",
    "devices", "get_device", "matmul", "to_device", "__version__",
]
