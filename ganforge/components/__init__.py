"""Built-in components, one package per kind: the registry imports these (and only these) on first lookup."""
