"""The empirical neural tangent kernel of a coordinate network: exact, fast, memory-lean; its spectra,
its matrix-free products and its kernel regression.

One concept per module; every public name is re-exported here (``from inrlib.ntk import X``):

- :mod:`~inrlib.ntk.terms`: the kernel-term protocol (``ntk_capture`` / ``ntk_gram``), the Gram functions
  of dense layers and grid levels, :func:`register_rule` (imports no model code: the layers import it);
- :mod:`~inrlib.ntk.checks`: what every entry point checks first, and :class:`NTKMemoryError`;
- :mod:`~inrlib.ntk.capture`: the sites (modules owning parameters), one forward and backward pass's
  captures and sensitivities, :class:`NTKFallbackWarning`;
- :mod:`~inrlib.ntk.engine`: :func:`empirical_ntk`, the structured engine;
- :mod:`~inrlib.ntk.reference`: the ``torch.func`` Jacobian references;
- :mod:`~inrlib.ntk.operator`: :class:`NTKOperator`, :func:`extreme_eigenvalues` (Lanczos, ARPACK),
  :func:`interlacing_bounds`;
- :mod:`~inrlib.ntk.spectra`: :func:`spectrum`, :func:`rounding_floor`, resampling, Weyl's bound, and
  reading spectra against their floors;
- :mod:`~inrlib.ntk.regression`: :func:`kernel_regression`, :func:`gradient_flow_time`.
"""
from ..resources import available_memory
from .capture import NTKFallbackWarning
from .checks import NTKMemoryError
from .engine import METHODS, OUTPUTS, PANEL_ROWS, Method, Outputs, empirical_ntk, terms_shape
from .operator import EigenMethod, NTKOperator, OperatorMethod, Which, extreme_eigenvalues, interlacing_bounds
from .regression import Reduction, gradient_flow_time, kernel_regression
from .spectra import (
                      compare_at,
                      log10_ratio,
                      mean_log_spectrum,
                      mean_resampled,
                      ordered_fraction,
                      percentile_eigenvalue,
                      resample_spectrum,
                      resolved_fraction,
                      rounding_floor,
                      spectrum,
                      weyl_check,
)
from .terms import DENSE_INTERPOLATION_ROWS, dense_gram, interpolation_gram, register_rule

__all__ = [
    "empirical_ntk", "spectrum", "resample_spectrum", "weyl_check", "rounding_floor",
    "NTKOperator", "extreme_eigenvalues", "interlacing_bounds", "kernel_regression", "gradient_flow_time",
    "dense_gram", "interpolation_gram", "register_rule", "NTKMemoryError", "NTKFallbackWarning",
    "percentile_eigenvalue", "log10_ratio", "compare_at", "mean_log_spectrum", "resolved_fraction",
    "mean_resampled", "ordered_fraction",
    "available_memory", "DENSE_INTERPOLATION_ROWS", "PANEL_ROWS", "OUTPUTS", "METHODS", "terms_shape",
    "Outputs", "Method", "OperatorMethod", "Which", "EigenMethod", "Reduction",
]
