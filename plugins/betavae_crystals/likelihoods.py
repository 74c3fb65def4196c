"""The mixed decoder likelihood for crystals: lattice, coordinates, species, property.

Over one item (see `representation` for the layout) it multiplies
* a Gaussian over the six lattice numbers (mean from z, as an offset from the training
  data's mean lattice, recorded at the first `check_data`; one learned scale per number);
* a von Mises over each fractional coordinate of each occupied slot, read as the angle
  2 pi f, with natural parameters (a, b) = kappa (cos mu, sin mu) from z, so the mean has
  no seam at 0 = 1; the density is per unit of f (a flat coordinate costs 0 nats) and
  kappa is capped at `max_concentration` (1e4: a spread of 0.0016 in f);
* a categorical over the species classes of each slot (class 0 = empty);
* when the data carry a property (context "property", standardised, and
  "property_mask"), a Gaussian on it whose mean is a small head reading the decoder's
  output for z: the property head of the latent space, trained with the VAE and saved
  with its weights.

Site matching (`site_matching="hungarian"`, the default): a crystal's sites have no
natural order, and in crystals of one species (Carbon-24) any fixed order (here: sorted
coordinates) jumps discontinuously between near-identical structures, so a decoder
trained slot by slot learns an average of the slots. Before scoring, the true sites are
assigned to the decoded slots by the permutation that maximises the slots' species and
von Mises coordinate log-likelihood (the von Mises is periodic, so this is the
minimum-image match), with scipy's `linear_sum_assignment` over every slot (empty
targets fill the slots the true sites leave free). `log_prob` is then the maximum over
all permutations of the true sites, exactly: invariant to their order. The lattice term
does not depend on the order. `site_matching="none"` scores slot by slot in the data's
canonical order.

Decoder output: (n, 2, max_sites + 2, 3 + V). Channel 0 holds the lattice means (rows 0
and 1, columns 0-2), the coordinate parameter a and the species logits (site rows,
columns 3..); channel 1 holds the coordinate parameter b; the rest is unused.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from betavae_core import ConfigError, DataError, Likelihood, check_finite

from .representation import COORD_COLS, EMPTY, LATTICE_ROWS, Z_SCALE, layout_of

LOG_2PI = math.log(2 * math.pi)
SITE_MATCHING = ("hungarian", "none")


def site_cost(log_species: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
              log_i0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(n, slots, targets) negative log-likelihood of true site `target` (a row of x's
    site block: coordinates and one-hot species) decoded by slot `slot`; an empty target
    costs only its species term (its coordinates are not scored)."""
    sites = x[:, LATTICE_ROWS:]
    onehot = sites[..., COORD_COLS:]
    angle = 2 * math.pi * sites[..., :3]
    species = torch.einsum("njv,niv->nji", log_species, onehot)
    coords = (torch.einsum("njd,nid->nji", a, torch.cos(angle))
              + torch.einsum("njd,nid->nji", b, torch.sin(angle))
              - log_i0.sum(dim=-1, keepdim=True))
    occupied = 1.0 - onehot[..., EMPTY]
    return -(species + coords * occupied[:, None, :])


def assignment(cost: torch.Tensor) -> torch.Tensor:
    """(n, slots) index of the target each slot gets, minimising each item's total cost
    (scipy's Hungarian solver, one item at a time on the CPU)."""
    from scipy.optimize import linear_sum_assignment

    matrices = cost.detach().to("cpu", torch.float64).numpy()
    out = torch.empty(cost.shape[:2], dtype=torch.long)
    for k, m in enumerate(matrices):
        _, cols = linear_sum_assignment(m)
        out[k] = torch.from_numpy(cols)
    return out.to(cost.device)


class CrystalDistribution:
    """p(x | z) for a batch of crystals; `log_prob(x)` gives one value per item (nats)."""

    def __init__(self, params: torch.Tensor, lattice_scale: torch.Tensor,
                 vocabulary: torch.Tensor, max_concentration: float,
                 property_mean: torch.Tensor | None = None,
                 property_scale: torch.Tensor | None = None,
                 context: dict[str, torch.Tensor] | None = None,
                 lattice_center: torch.Tensor | None = None,
                 site_matching: str = "hungarian") -> None:
        self.site_matching = site_matching
        sites = params[:, :, LATTICE_ROWS:]
        self.lattice_mean = torch.cat([params[:, 0, 0, :3], params[:, 0, 1, :3]], dim=1)
        if lattice_center is not None:
            self.lattice_mean = self.lattice_mean + lattice_center
        self.lattice_scale = lattice_scale
        a, b = sites[:, 0, :, :3], sites[:, 1, :, :3]
        kappa = torch.sqrt(a * a + b * b + 1e-8)
        shrink = torch.clamp(max_concentration / kappa, max=1.0)
        self.a, self.b, self.kappa = a * shrink, b * shrink, kappa * shrink
        self.logits = sites[:, 0, :, COORD_COLS:]
        self.vocabulary = vocabulary
        self.property_mean = property_mean
        self.property_scale = property_scale
        self.context = context or {}
        self.shape = params.shape[:1] + params.shape[2:]

    # --- parts of log p(x | z) -----------------------------------------------------------
    def lattice_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        target = torch.cat([x[:, 0, :3], x[:, 1, :3]], dim=1)
        z = (target - self.lattice_mean) / self.lattice_scale
        return (-0.5 * z * z - torch.log(self.lattice_scale) - 0.5 * LOG_2PI).sum(dim=1)

    def species_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        onehot = x[:, LATTICE_ROWS:, COORD_COLS:]
        return (onehot * F.log_softmax(self.logits, dim=-1)).sum(dim=(1, 2))

    def coordinate_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * x[:, LATTICE_ROWS:, :3]
        log_i0 = torch.log(torch.special.i0e(self.kappa)) + self.kappa
        density = self.a * torch.cos(angle) + self.b * torch.sin(angle) - log_i0
        occupied = 1.0 - x[:, LATTICE_ROWS:, COORD_COLS + EMPTY]
        return (density.sum(dim=-1) * occupied).sum(dim=1)

    def property_log_prob(self) -> torch.Tensor | None:
        if self.property_mean is None or "property" not in self.context:
            return None
        value = self.context["property"].reshape(-1).to(self.property_mean)
        mask = self.context.get("property_mask", torch.ones_like(value)).reshape(-1)
        z = (value - self.property_mean) / self.property_scale
        return mask.to(z) * (-0.5 * z * z - torch.log(self.property_scale) - 0.5 * LOG_2PI)

    def matched(self, x: torch.Tensor) -> torch.Tensor:
        """x with its site rows permuted to the decoded slots they fit best (unchanged
        with `site_matching="none"`)."""
        if self.site_matching == "none":
            return x
        log_i0 = torch.log(torch.special.i0e(self.kappa)) + self.kappa
        with torch.no_grad():
            cost = site_cost(F.log_softmax(self.logits, dim=-1), self.a, self.b, log_i0, x)
            order = assignment(cost)
        sites = torch.gather(x[:, LATTICE_ROWS:], 1,
                             order[..., None].expand(-1, -1, x.shape[-1]))
        return torch.cat([x[:, :LATTICE_ROWS], sites], dim=1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = self.matched(x)
        total = (self.lattice_log_prob(x) + self.species_log_prob(x)
                 + self.coordinate_log_prob(x))
        prop = self.property_log_prob()
        return total if prop is None else total + prop

    # --- point estimates and draws -------------------------------------------------------
    def _assemble(self, lattice: torch.Tensor, frac: torch.Tensor, species: torch.Tensor
                  ) -> torch.Tensor:
        out = torch.zeros(self.shape, dtype=lattice.dtype, device=lattice.device)
        out[:, 0, :3], out[:, 1, :3] = lattice[:, :3], lattice[:, 3:]
        out[:, 0, COORD_COLS:] = self.vocabulary.to(lattice) / Z_SCALE
        out[:, LATTICE_ROWS:, :3] = frac
        out[:, LATTICE_ROWS:, COORD_COLS:] = species
        return out

    @property
    def coordinate_mean(self) -> torch.Tensor:
        """Mean direction of each coordinate as a fraction in [0, 1)."""
        return torch.remainder(torch.atan2(self.b, self.a) / (2 * math.pi), 1.0)

    @property
    def mean(self) -> torch.Tensor:
        """Lattice means, mean coordinates and species probabilities, in the data layout."""
        return self._assemble(self.lattice_mean, self.coordinate_mean,
                              torch.softmax(self.logits, dim=-1))

    def mode(self) -> torch.Tensor:
        """Like `mean`, with the most probable species as a one-hot (a decodable item)."""
        species = F.one_hot(self.logits.argmax(dim=-1), self.logits.shape[-1])
        return self._assemble(self.lattice_mean, self.coordinate_mean, species.to(self.a))

    def sample(self) -> torch.Tensor:
        with torch.no_grad():
            lattice = self.lattice_mean + self.lattice_scale * torch.randn_like(self.lattice_mean)
            angle = torch.distributions.VonMises(
                torch.atan2(self.b, self.a), self.kappa.clamp(min=1e-4), validate_args=False
            ).sample()
            frac = torch.remainder(angle / (2 * math.pi), 1.0)
            classes = torch.distributions.Categorical(logits=self.logits).sample()
            species = F.one_hot(classes, self.logits.shape[-1]).to(self.a)
            return self._assemble(lattice, frac, species)


class CrystalLikelihood(Likelihood):
    """Gaussian lattice x von Mises coordinates x categorical species (x property).

    Options (declared on the record in `plugin`): `max_concentration` (cap on the von
    Mises kappa, default 1e4); `min_lattice_scale` (floor of the lattice numbers' learned
    s.d., default 0.01); `property_hidden` (width of the property head, default 64; 0
    turns the head off); `site_matching` ("hungarian", default: score the best
    assignment of true sites to decoded slots; "none": the canonical order).
    """

    params_per_element = 2

    def __init__(self, event_shape: tuple[int, ...], max_concentration: float = 1e4,
                 min_lattice_scale: float = 0.01, property_hidden: int = 64,
                 site_matching: str = "hungarian") -> None:
        super().__init__(event_shape, max_concentration=max_concentration,
                         min_lattice_scale=min_lattice_scale, property_hidden=property_hidden,
                         site_matching=site_matching)
        if site_matching not in SITE_MATCHING:
            raise ConfigError(f"likelihood option site_matching must be one of "
                              f"{SITE_MATCHING}; got {site_matching!r}.")
        self.site_matching = str(site_matching)
        if not float(min_lattice_scale) > 0:
            raise DataError(f"min_lattice_scale must be > 0; got {min_lattice_scale}.")
        self.min_log_scale = math.log(float(min_lattice_scale))
        self.max_sites, self.n_classes = layout_of(self.event_shape)
        if not float(max_concentration) > 0:
            raise DataError(f"max_concentration must be > 0; got {max_concentration}.")
        self.max_concentration = float(max_concentration)
        self.lattice_log_scale = nn.Parameter(torch.full((6,), -1.0))
        # Atomic numbers of the species classes, taken from the data at `check_data`:
        # saved with the weights so a model can tell data of another vocabulary apart.
        self.register_buffer("vocabulary", torch.zeros(self.n_classes))
        # The training data's mean lattice numbers, recorded with the vocabulary: the
        # decoder predicts the lattice as an offset from it.
        self.register_buffer("lattice_center", torch.zeros(6))
        n_features = self.n_classes * self.max_sites + 6 * self.max_sites + 6
        self.property_head: nn.Module | None = None
        if int(property_hidden) > 0:
            self.property_head = nn.Sequential(
                nn.Linear(n_features, int(property_hidden)), nn.SiLU(),
                nn.Linear(int(property_hidden), 1),
            )
            self.property_log_scale = nn.Parameter(torch.zeros(()))

    def check_data(self, x: torch.Tensor) -> None:
        check_finite(x, "crystal data")
        if tuple(x.shape[1:]) != self.event_shape:
            raise DataError(f"this crystal model takes items of shape {self.event_shape} "
                            f"(max_sites {self.max_sites}, {self.n_classes - 1} elements); got "
                            f"{tuple(x.shape[1:])}. Encode the data with the model's "
                            f"representation (loader option like=RUN_DIR).")
        species = x[:, LATTICE_ROWS:, COORD_COLS:]
        onehot = ((species == 0) | (species == 1)).all(dim=-1) & (species.sum(dim=-1) == 1)
        if not bool(onehot.all()):
            item, slot = (int(v) for v in torch.nonzero(~onehot)[0])
            raise DataError(f"crystal item {item}, site slot {slot}: species must be one-hot.")
        frac = x[:, LATTICE_ROWS:, :3]
        outside = ((frac < 0) | (frac >= 1)).any(dim=-1)
        if bool(outside.any()):
            item, slot = (int(v) for v in torch.nonzero(outside)[0])
            raise DataError(f"crystal item {item}, site slot {slot}: fractional coordinates "
                            f"must lie in [0, 1).")
        vocab = torch.round(x[:, 0, COORD_COLS:] * Z_SCALE)
        if bool((vocab != vocab[:1]).any()):
            item = int(torch.nonzero((vocab != vocab[:1]).any(dim=1))[0, 0])
            raise DataError(f"crystal item {item} was encoded with another species vocabulary "
                            f"than item 0.")
        first_fit = not bool(self.vocabulary.any())
        self.check_vocabulary(vocab[0])
        if first_fit:
            with torch.no_grad():
                lattice = torch.cat([x[:, 0, :3], x[:, 1, :3]], dim=1)
                self.lattice_center.copy_(lattice.mean(dim=0).to(self.lattice_center))

    def check_vocabulary(self, vocab: torch.Tensor) -> None:
        """Record the data's vocabulary (first fit) or refuse a different one."""
        vocab = vocab.to(self.vocabulary)
        if not bool(self.vocabulary.any()):
            with torch.no_grad():
                self.vocabulary.copy_(vocab)
        elif not torch.equal(vocab, self.vocabulary):
            raise DataError("these crystals were encoded with another species vocabulary than "
                            "the model's; load them with the loader option like=RUN_DIR.")

    def property_prediction(self, params: torch.Tensor) -> torch.Tensor | None:
        """The property head's standardised prediction for decoder output (n,), or None.

        The head reads bounded features of the decoded structure — species probabilities,
        (cos, sin) of each mean coordinate angle and the lattice means — not the raw
        output, whose concentrations reach 1e4 and would swamp its gradients."""
        if self.property_head is None:
            return None
        sites = params[:, :, LATTICE_ROWS:]
        probs = torch.softmax(sites[:, 0, :, COORD_COLS:], dim=-1)
        a, b = sites[:, 0, :, :3], sites[:, 1, :, :3]
        norm = torch.sqrt(a * a + b * b + 1e-8)
        lattice = torch.cat([params[:, 0, 0, :3], params[:, 0, 1, :3]], dim=1)
        features = torch.cat([probs.flatten(1), (a / norm).flatten(1), (b / norm).flatten(1),
                              lattice], dim=1)
        return self.property_head(features).squeeze(-1)

    def distribution(self, params: torch.Tensor, context: dict[str, Any] | None = None
                     ) -> CrystalDistribution:
        expected = (self.params_per_element, *self.event_shape)
        if tuple(params.shape[1:]) != expected:
            raise ValueError(f"the crystal likelihood needs decoder output of shape (n, "
                             f"{expected}); got {tuple(params.shape)}.")
        prediction = self.property_prediction(params)
        scale = (None if prediction is None
                 else self.property_log_scale.clamp(-6.0, 3.0).exp())
        return CrystalDistribution(
            params, self.lattice_log_scale.clamp(self.min_log_scale, 3.0).exp(), self.vocabulary,
            self.max_concentration, prediction, scale, context, self.lattice_center,
            self.site_matching,
        )
