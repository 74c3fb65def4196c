"""betavae-dna: an example betavae domain plugin for fixed-length DNA sequences.

The hooks live in `betavae_dna.plugin` (the module the `betavae` entry point names);
the work they point to lives in `loaders` (the motif set and FASTA files as
`DomainData`), `sequences` (one-hot encoding, FASTA parsing, the motif generator),
`likelihood` (a categorical decoder over A/C/G/T) and `evaluation`. Importing this
package or its plugin module is cheap: neither imports numpy or torch.
"""

__version__ = "0.1.0"
