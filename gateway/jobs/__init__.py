"""Jobs: the public model, the stored record and the transitions between states."""
