"""Adapters that make third-party models denoisers of our protocol ``D(x_t, t, label=None) -> x0_hat``.

- `local_attention`: the local-attention probe of a patch transformer and the gradient test of a receptive
  field (torch only);
- `diffusers`: `DiffusersDenoiser`, a Hugging Face diffusers DiT, SD3 or U-Net as a denoiser (optional extra:
  pip install 'phasediff[diffusers]'; importing it without diffusers raises a PhasediffError that says so).
"""
