"""phasediff: where a diffusion model needs global context, and where a local denoiser is enough."""

from phasediff.errors import PhasediffError

__version__ = "0.1.0"
__all__ = ["PhasediffError", "__version__"]
