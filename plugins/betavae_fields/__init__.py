"""betavae-fields: lattice field configurations (2D Ising, XY, phi^4) for betavae.

Monte Carlo data with exact observables, likelihoods for spins, angles and real fields,
a convolutional architecture with periodic boundaries, latent order parameters and
phase-transition detection, and generated configurations judged by their physics.
"""
