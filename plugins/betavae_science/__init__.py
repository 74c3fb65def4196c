"""betavae_science: the research harness (experiments, disentanglement metrics) as a plugin."""
