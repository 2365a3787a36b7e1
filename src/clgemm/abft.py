"""`clgemm.abft`: verify any float32 product with Huang-Abraham checksums.

    v = clgemm.abft.verify(A, B, C)            # C computed anywhere (numpy or device arrays)
    v.ok, v.rows, v.cols, v.max_ratio

`matmul(..., check=True)` runs the same checks on its own result and repairs what they find.
"""

from .guard.abft import (  # noqa: F401
    DEFAULT_C, KAPPA, Verdict, calibration_for, calibration_path, store_calibration, verify,
)
from .lab.guard_campaign import calibrate  # noqa: F401
from .guard import faults  # noqa: F401

__all__ = ["Verdict", "verify", "calibrate", "calibration_for", "calibration_path",
           "store_calibration", "faults", "DEFAULT_C", "KAPPA"]
