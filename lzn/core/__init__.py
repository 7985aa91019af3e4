"""Pure tensor math of LZN: latent zones, ODE solvers, image rectified flow."""
