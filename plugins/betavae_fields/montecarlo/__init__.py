"""Monte Carlo ensembles of 2D lattice fields: Ising, XY and phi^4, with exact checks.

Every sampler keeps all chains of all control values in one (C, L, L) array and updates
them together, so a spin update costs a share of a few numpy passes over one large
array instead of Python overhead on many small ones. The modules, by role:

- `blocked`: the blocked checkerboard layout (C, 2, 2, L/2, L/2) the chains hold their
  lattices in, so each Metropolis pass touches one contiguous sublattice;
- `ising` (Wolff near Tc, Metropolis elsewhere), `xy` (Metropolis + over-relaxation, plus
  Wolff reflections near T_BKT), `phi4` (Metropolis across kappa, plus the Wolff
  embedding near kappa_c): one chains object and one public sampler each;
- `cluster`: the batched embedded Wolff clusters that `xy` and `phi4` share;
- `schedule`: thermalisation with adaptation, the pilot run that measures tau, and the
  thinned collection every sampler shares; `autocorrelation`: tau itself;
- `observables` (energy, magnetisation; also for generated configurations), `helicity`
  (the XY helicity modulus, with bootstrap errors), `exact`
  (Onsager), `checks` (parameter checks), `ensemble` (what a sampler returns).

The public names are re-exported here: `from betavae_fields import montecarlo as mc`.
"""

from .autocorrelation import integrated_autocorr_time
from .ensemble import Ensemble
from .exact import TC_ISING, onsager_energy, onsager_magnetization
from .helicity import HelicityCurve, helicity_curve, helicity_modulus
from .ising import metropolis_reference, sample_ising
from .observables import ising_observables, phi4_observables, xy_observables
from .phi4 import DEFAULT_LAM, KAPPA_C_PHI4, sample_phi4
from .schedule import MAX_SPACING
from .xy import sample_xy

__all__ = [
    "DEFAULT_LAM", "Ensemble", "HelicityCurve", "KAPPA_C_PHI4", "MAX_SPACING", "TC_ISING",
    "helicity_curve", "helicity_modulus", "integrated_autocorr_time", "ising_observables",
    "metropolis_reference",
    "onsager_energy", "onsager_magnetization", "phi4_observables", "sample_ising",
    "sample_phi4", "sample_xy", "xy_observables",
]
