"""The web layer: routes per audience, thin handlers over the domain modules."""
