"""betavae-dna: an example betavae domain plugin for fixed-length DNA sequences.

The hooks live in `betavae_dna.plugin` (the module the `betavae` entry point names);
the work they point to lives in `sequences` (one-hot encoding, FASTA, the synthetic
motif set), `likelihood` (a categorical decoder over A/C/G/T) and `evaluation`.
Importing this package is cheap: nothing here imports torch.
"""

__version__ = "0.1.0"
