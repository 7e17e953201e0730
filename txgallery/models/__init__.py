"""Models: the task table, the registry of embedded models, the store that finds and loads every model, and loaders."""
