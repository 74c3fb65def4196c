"""The hooks betavae_science implements: the entry point `science` points here."""
